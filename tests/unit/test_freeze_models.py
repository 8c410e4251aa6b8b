"""What models/ will hold, from fetch_set()'s result; host checks; the full flavor needs models."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlfreeze import hostinfo
from mlfreeze.bundle.freeze import (
    AppConfig,
    FreezeRequest,
    bundle_models,
    freeze_bundle,
    install_models,
    models_index_entries,
)
from mlfreeze.errors import FreezeError, WrongHostError
from mlfreeze.platforms.profiles import all_profiles


def _profile(here: bool):
    host = hostinfo.current()
    for p in all_profiles().values():
        if ((p.host_os, p.host_arch) == (host.os, host.arch)) is here:
            return p
    pytest.skip(f"no profile {'for' if here else 'other than'} {host}")


def _fetched(tmp_path: Path) -> dict:
    (tmp_path / "cache").mkdir()
    w = tmp_path / "cache" / "abc"
    w.write_bytes(b"weights")
    art = SimpleNamespace(file="open_clip_model.safetensors", role="weights")
    spec = SimpleNamespace(kind="clip", arch="ViT-B-32-quickgelu", embed_dim=8, artifacts=(art,),
                           verify={"zero_shot": {"top1": 1.0}})
    return {"demo-clip": SimpleNamespace(model=spec, bundle_files={"open_clip_model.safetensors": w})}


def test_bundle_models_hashes_every_file_and_keeps_roles_and_thresholds(tmp_path: Path) -> None:
    (m,) = bundle_models(_fetched(tmp_path))
    assert set(m.files) == {"demo-clip/open_clip_model.safetensors"}
    assert m.sha256["demo-clip/open_clip_model.safetensors"] == hashlib.sha256(b"weights").hexdigest()
    (entry,) = models_index_entries([m])
    assert entry["files"] == {"open_clip_model.safetensors": "demo-clip/open_clip_model.safetensors"}
    assert entry["arch"] == "ViT-B-32-quickgelu" and entry["embed_dim"] == 8
    assert entry["roles"] == {"open_clip_model.safetensors": "weights"}
    assert entry["verify"] == {"zero_shot": {"top1": 1.0}}


def test_install_models_copies_models_goldens_and_probes(tmp_path: Path) -> None:
    pytest.importorskip("insightface")  # its t1.jpg is one of the probe inputs copied into the bundle
    goldens = tmp_path / "goldens"
    goldens.mkdir()
    (goldens / "demo-clip.json").write_text('{"pinned": true}')
    models = bundle_models(_fetched(tmp_path))
    install_models(tmp_path / "b" / "models", models, "demo", expected_providers=("CPUExecutionProvider",),
                   goldens=goldens)
    base = tmp_path / "b" / "models"
    assert (base / "demo-clip/open_clip_model.safetensors").read_bytes() == b"weights"
    index = json.loads((base / "models.json").read_text())
    assert index["set"] == "demo" and index["expected_providers"] == ["CPUExecutionProvider"]
    assert index["models"][0]["golden"] == "demo-clip/golden.json"
    assert (base / "demo-clip/golden.json").read_text() == '{"pinned": true}'
    assert any((base / "_probes").iterdir())


def test_wrong_host_is_refused_with_the_plan_hint(tmp_path: Path) -> None:
    other = _profile(here=False)
    (tmp_path / "a.py").write_text("")
    app = AppConfig(app="a", entry=tmp_path / "a.py", version="1", model_set="demo", sources=(), pathex=(tmp_path,))
    with pytest.raises(WrongHostError, match=f"mlfreeze plan --platform {other.name}"):
        freeze_bundle(FreezeRequest(profile=other, flavor="lite", root=tmp_path, app=app, dist_dir=tmp_path / "dist"))


def test_full_without_models_is_a_freeze_error(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    app = AppConfig(app="a", entry=tmp_path / "a.py", version="1", model_set="demo", sources=(), pathex=(tmp_path,))
    with pytest.raises(FreezeError, match="needs its models"):
        freeze_bundle(FreezeRequest(profile=_profile(here=True), flavor="full", root=tmp_path, app=app,
                      dist_dir=tmp_path / "dist", work_dir=tmp_path / "w"))
    assert not (tmp_path / "dist").exists() and not (tmp_path / "w").exists()


def test_probe_files_follow_the_sets_model_kinds() -> None:
    from mlfreeze.bundle.freeze import BundleModel, probe_names

    probes = {"skimage:astronaut": ("skimage", "a.png"), "insightface:t1": ("insightface", "t1.jpg")}

    def model(kind: str) -> BundleModel:
        return BundleModel(id=kind, kind=kind, arch="", embed_dim=1, files={}, sha256={}, roles={}, verify={})

    assert probe_names([model("clip")], probes) == ["skimage:astronaut"]
    assert probe_names([model("clip"), model("insightface")], probes) == ["insightface:t1", "skimage:astronaut"]


def _fetched_with_towers(tmp_path: Path) -> dict:
    (tmp_path / "c").mkdir()
    names = {"w.safetensors": "weights", "c.json": "config", "i.onnx": "image_onnx", "t.onnx": "text_onnx"}
    paths = {}
    for name in names:
        paths[name] = tmp_path / "c" / name
        paths[name].write_bytes(name.encode())
    derived = "demo-clip@" + "ab" * 32
    arts = tuple(SimpleNamespace(file=n, role=r, derived_from=derived if r.endswith("_onnx") else "")
                 for n, r in names.items())
    spec = SimpleNamespace(kind="clip", arch="a", embed_dim=8, artifacts=arts, verify={})
    face = SimpleNamespace(kind="insightface", arch="", embed_dim=512, verify={},
                           artifacts=(SimpleNamespace(file="det.onnx", role="weights", derived_from=""),))
    (tmp_path / "c" / "det.onnx").write_bytes(b"det")
    return {"demo-clip": SimpleNamespace(model=spec, bundle_files=paths),
            "faces": SimpleNamespace(model=face, bundle_files={"det.onnx": tmp_path / "c" / "det.onnx"})}


@pytest.mark.parametrize(("flavor", "clip_files"), [
    ("full", {"w.safetensors", "c.json"}),
    ("slim", {"i.onnx", "t.onnx"}),
])
def test_each_flavor_ships_the_clip_artifacts_of_its_path(tmp_path: Path, flavor: str, clip_files: set) -> None:
    clip, faces = bundle_models(_fetched_with_towers(tmp_path), flavor)
    assert {rel.split("/", 1)[1] for rel in clip.files} == clip_files
    assert set(clip.roles) == clip_files
    assert set(faces.files) == {"faces/det.onnx"}  # face models go into both
    (entry, _) = models_index_entries([clip, faces])
    want = {n: "demo-clip@" + "ab" * 32 for n in clip_files if n.endswith(".onnx")}
    assert entry["derived_from"] == want


def test_slim_uses_an_unpinned_export_and_refuses_a_clip_without_towers(tmp_path: Path) -> None:
    fetched = _fetched(tmp_path)
    with pytest.raises(FreezeError, match="mlfreeze export"):
        bundle_models(fetched, "slim")
    (tmp_path / "x").mkdir()
    ex = SimpleNamespace(image=tmp_path / "x" / "image.onnx", text=tmp_path / "x" / "text.onnx",
                         derived_from="demo-clip@" + "cd" * 32)
    ex.image.write_bytes(b"i")
    ex.text.write_bytes(b"t")
    (m,) = bundle_models(fetched, "slim", {"demo-clip": ex})
    assert set(m.files) == {"demo-clip/demo-clip_image.onnx", "demo-clip/demo-clip_text.onnx"}
    assert m.roles == {"demo-clip_image.onnx": "image_onnx", "demo-clip_text.onnx": "text_onnx"}
    assert set(m.derived_from.values()) == {"demo-clip@" + "cd" * 32}
