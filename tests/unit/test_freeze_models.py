"""What models/ will hold, from fetch_set()'s result; host checks; the full flavor needs models."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from builder import hostinfo
from builder.errors import FreezeError, WrongHostError
from builder.freeze import AppConfig, bundle_models, check_host, freeze_bundle, install_models, models_index_entries
from platforms.profiles import all_profiles


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
    return {"demo-clip": SimpleNamespace(model=SimpleNamespace(kind="clip", arch="ViT-B-32-quickgelu", embed_dim=8),
                                         bundle_files={"open_clip_model.safetensors": w})}


def test_bundle_models_adds_goldens_and_hashes_every_file(tmp_path: Path) -> None:
    goldens = tmp_path / "goldens"
    goldens.mkdir()
    (goldens / "demo-clip.json").write_text("{}")
    (m,) = bundle_models(_fetched(tmp_path), goldens)
    assert set(m.files) == {"demo-clip/open_clip_model.safetensors", "demo-clip/golden.json"}
    assert m.sha256["demo-clip/open_clip_model.safetensors"] == hashlib.sha256(b"weights").hexdigest()
    (entry,) = models_index_entries([m])
    assert entry["files"] == {"open_clip_model.safetensors": "demo-clip/open_clip_model.safetensors",
                              "golden.json": "demo-clip/golden.json"}
    assert entry["arch"] == "ViT-B-32-quickgelu" and entry["embed_dim"] == 8


def test_install_models_copies_into_models_id(tmp_path: Path) -> None:
    models = bundle_models(_fetched(tmp_path), tmp_path / "no-goldens")
    install_models(tmp_path / "b" / "models", models, "demo")
    assert (tmp_path / "b/models/demo-clip/open_clip_model.safetensors").read_bytes() == b"weights"
    assert (tmp_path / "b/models/models.json").is_file()


def test_wrong_host_is_refused_with_the_plan_hint() -> None:
    other = _profile(here=False)
    with pytest.raises(WrongHostError, match=f"mlfreeze plan --platform {other.name}"):
        check_host(other)


def test_full_without_models_is_a_freeze_error(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    app = AppConfig(app="a", entry=tmp_path / "a.py", version="1", model_set="demo", sources=(), pathex=(tmp_path,))
    with pytest.raises(FreezeError, match="needs its models"):
        freeze_bundle(profile=_profile(here=True), flavor="full", root=tmp_path, app=app,
                      dist_dir=tmp_path / "dist", work_dir=tmp_path / "w")
    assert not (tmp_path / "dist").exists() and not (tmp_path / "w").exists()
