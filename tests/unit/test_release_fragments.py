"""Per-runner release fragments merged by the release job (src/mlfreeze/release/fragments.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from release_bundles import (
    EPOCH,
    fake_bundles_have_no_closure,  # noqa: F401  (autouse)
    make_bundle,
    tree_bytes,
)

from mlfreeze import cli
from mlfreeze.release import assemble as release

ENV = {"SOURCE_DATE_EPOCH": EPOCH}


def _fragment(root: Path, platform: str, flavors: tuple[str, ...], **env: str) -> Path:
    """What one build runner uploads: dist/release/ of its own bundles, renamed release-<platform>."""
    dist = root / f"runner-{platform}"
    for flavor in flavors:
        make_bundle(dist, platform, flavor, seed=f"{platform}-{flavor}".encode(), payload=150_000)
    made = release.release(dist, env={**ENV, **env}).directory
    target = root / "dist" / f"release-{platform}"
    target.parent.mkdir(exist_ok=True)
    made.rename(target)
    return target


def test_merging_fragments_equals_releasing_everything_at_once(tmp_path: Path) -> None:
    _fragment(tmp_path, "linux-cpu", ("full", "lite"))
    _fragment(tmp_path, "win-cuda", ("full",))
    merged = release.release(tmp_path / "dist", version="v0.1.0", env=ENV)
    together = tmp_path / "together"
    for platform, flavors in (("linux-cpu", ("full", "lite")), ("win-cuda", ("full",))):
        for flavor in flavors:
            make_bundle(together, platform, flavor, seed=f"{platform}-{flavor}".encode(), payload=150_000)
    direct = release.release(together, version="v0.1.0", env=ENV)
    assert tree_bytes(merged.directory) == tree_bytes(direct.directory)
    assert len(merged.manifest["assets"]) == 3
    assert any("merged 2 assets from release-linux-cpu/" in m for m in merged.messages)
    assert tree_bytes(tmp_path / "dist" / "release-linux-cpu")  # the fragment is left as it was


def test_merged_split_parts_keep_their_checksums(tmp_path: Path) -> None:
    _fragment(tmp_path, "linux-cpu", ("lite",), MLFREEZE_SPLIT_LIMIT="64KiB")
    merged = release.release(tmp_path / "dist", env=ENV)
    (asset,) = merged.manifest["assets"]
    assert len(asset["parts"]) >= 2
    assert any("comes in" in m and "2 GiB" in m for m in merged.messages)
    sums = dict(reversed(line.split("  ")) for line in (merged.directory / "SHA256SUMS").read_text().splitlines())
    assert all(sums[p["file"]] == p["sha256"] for p in asset["parts"])


def test_a_damaged_fragment_is_exit_3_and_nothing_is_written(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    fragment = _fragment(tmp_path, "linux-cpu", ("lite",))
    archive = fragment / "photo-search-0.1.0-linux-cpu-lite.tar.gz"
    data = bytearray(archive.read_bytes())
    data[100] ^= 0xFF
    archive.write_bytes(bytes(data))
    code = cli.main(["release", str(tmp_path / "dist")])
    err = capsys.readouterr().err
    assert code == 3 and "sha256 differs" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == ["release-linux-cpu"]


def test_a_file_named_by_the_manifest_but_not_listed_is_exit_2(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    fragment = _fragment(tmp_path, "linux-cpu", ("lite",))
    sums = fragment / "SHA256SUMS"
    sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines() if ".cdx.json" not in line))
    assert cli.main(["release", str(tmp_path / "dist")]) == 2
    assert "not in SHA256SUMS" in capsys.readouterr().err


def test_the_same_bundle_twice_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fragment(tmp_path, "linux-cpu", ("lite",))
    make_bundle(tmp_path / "dist", "linux-cpu", "lite")
    assert cli.main(["release", str(tmp_path / "dist")]) == 2
    assert "twice" in capsys.readouterr().err


def test_a_fragment_with_a_failed_selftest_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fragment = _fragment(tmp_path, "linux-cpu", ("lite",))
    manifest = json.loads((fragment / "release-manifest.json").read_text())
    manifest["assets"][0]["selftest"] = {"passed": False, "failed": 2}
    (fragment / "release-manifest.json").write_text(json.dumps(manifest))
    digest = hashlib.sha256((fragment / "release-manifest.json").read_bytes()).hexdigest()
    sums = fragment / "SHA256SUMS"
    sums.write_text("".join((f"{digest}  release-manifest.json" if line.endswith("  release-manifest.json")
                             else line) + "\n" for line in sums.read_text().splitlines()))
    assert cli.main(["release", str(tmp_path / "dist")]) == 1
    assert "selftest failed" in capsys.readouterr().err


def test_a_foreign_manifest_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dist" / "release-x").mkdir(parents=True)
    (tmp_path / "dist" / "release-x" / "release-manifest.json").write_text('{"schema_version": 7, "assets": []}')
    assert cli.main(["release", str(tmp_path / "dist")]) == 2
    assert f"schema_version {release.MANIFEST_SCHEMA_VERSION}" in capsys.readouterr().err


def test_an_asset_without_its_keys_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fragment = _fragment(tmp_path, "linux-cpu", ("lite",))
    manifest = json.loads((fragment / "release-manifest.json").read_text())
    del manifest["assets"][0]["version"]
    (fragment / "release-manifest.json").write_text(json.dumps(manifest))
    assert cli.main(["release", str(tmp_path / "dist")]) == 2
    assert "lacks one of" in capsys.readouterr().err
