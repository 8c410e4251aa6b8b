"""CycloneDX SBOM of a bundle (src/mlfreeze/release/sbom.py)."""

from __future__ import annotations

import json
from pathlib import Path

from release_bundles import (
    build_info,
    fake_bundles_have_no_closure,  # noqa: F401  (autouse)
    make_bundle,
)

from mlfreeze.release import assemble as release
from mlfreeze.release import sbom


def test_purl_normalises_names_and_encodes_local_versions() -> None:
    assert sbom.purl("Open_Clip.Torch", "3.3.0") == "pkg:pypi/open-clip-torch@3.3.0"
    assert sbom.purl("torch", "2.14.1+cu130") == "pkg:pypi/torch@2.14.1%2Bcu130"


def test_components_merge_build_info_and_bundled_dist_info(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "linux-cuda", "full",
                         distributions={"torch": "2.14.1", "NumPy": "1.0.0", "pyinstaller": "6.22.3"})
    doc = sbom.sbom(json.loads((bundle / "BUILD-INFO.json").read_text()), bundle, epoch=1767225600,
                    hashes={"models/demo-clip/weights.bin": "ab" * 32})
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] in ("1.5", "1.6")
    libs = {c["name"]: c for c in doc["components"] if c["type"] == "library"}
    assert libs["numpy"]["version"] == "2.1.3"  # what ships in _internal wins over the map
    assert "NumPy" not in libs
    assert libs["torch"]["purl"] == "pkg:pypi/torch@2.14.1"
    assert libs["pyinstaller"]["purl"] == "pkg:pypi/pyinstaller@6.22.3"
    models = [c for c in doc["components"] if c["type"] == "machine-learning-model"]
    assert [m["name"] for m in models] == ["demo-clip/weights.bin"]  # the path inside models/
    assert models[0]["properties"] == [{"name": "mlfreeze:model-kind", "value": "clip"}]
    # the hash comes from the re-read file (``hashes``), never from BUILD-INFO's copy
    assert models[0]["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    assert doc["metadata"]["timestamp"] == "2026-01-01T00:00:00Z"
    refs = [c["bom-ref"] for c in doc["components"]]
    assert len(refs) == len(set(refs))
    assert doc["dependencies"][0]["dependsOn"] == refs
    props = {p["name"]: p["value"] for p in doc["metadata"]["component"]["properties"]}
    assert props["mlfreeze:platform"] == "linux-cuda" and props["mlfreeze:accelerator"] == "cuda"


def test_sbom_is_deterministic_and_identity_bound(tmp_path: Path) -> None:
    info = build_info("linux-cpu", "lite")
    a = sbom.sbom(info, None, epoch=0, hashes={})
    assert a == sbom.sbom(info, None, epoch=0, hashes={})
    other = sbom.sbom(build_info("linux-cpu", "full"), None, epoch=0, hashes={"models/demo-clip/weights.bin": "0" * 64})
    assert a["serialNumber"] != other["serialNumber"]
    assert a["serialNumber"].startswith("urn:uuid:")


def test_release_writes_one_sbom_per_bundle(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    make_bundle(dist, "linux-cpu", "lite")
    make_bundle(dist, "mac-arm64", "full")
    result = release.release(dist, env={"SOURCE_DATE_EPOCH": "1767225600"})
    for asset in result.manifest["assets"]:
        doc = json.loads((result.directory / asset["sbom"]).read_text())
        assert doc["metadata"]["component"]["name"] == "photo-search"
        assert any(c.get("purl") == "pkg:pypi/numpy@2.1.3" for c in doc["components"])
