"""photo_search.models: finding the models dir and reading models.json (no ML stack)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from photo_search.errors import EXIT_UNAVAILABLE, EXIT_USAGE, ModelsError, ModelsNotFound
from photo_search.models import MODELS_ENV, file_sha256, find_models_dir, load_model_set, locate_model_set


def _write(root: Path, models: list[dict], **top: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    doc = {"schema_version": 1, "set": "test", "models": models, **top}
    (root / "models.json").write_text(json.dumps(doc))
    return root


def _clip(root: Path, **over: object) -> dict:
    (root / "c").mkdir(parents=True, exist_ok=True)
    (root / "c" / "w.safetensors").write_bytes(b"weights")
    (root / "c" / "cfg.json").write_text("{}")
    entry = {"id": "c", "kind": "clip", "arch": "tiny", "embed_dim": 8,
             "files": {"w.safetensors": "c/w.safetensors"}, "config": "c/cfg.json"}
    entry.update(over)
    return entry


def _faces(root: Path) -> dict:
    (root / "f" / "pack").mkdir(parents=True, exist_ok=True)
    for name in ("det.onnx", "rec.onnx"):
        (root / "f" / "pack" / name).write_bytes(name.encode())
    return {"id": "f", "kind": "insightface", "embed_dim": 512,
            "files": {"det.onnx": "f/pack/det.onnx", "rec.onnx": "f/pack/rec.onnx"}}


def test_valid_set_is_read_with_paths_resolved(tmp_path: Path) -> None:
    root = _write(tmp_path / "m", [_clip(tmp_path / "m"), _faces(tmp_path / "m")])
    ms = load_model_set(root)
    assert ms.set_name == "test"
    assert [m.id for m in ms.models] == ["c", "f"]
    clip = ms.first("clip")
    assert clip is not None and clip.arch == "tiny" and clip.embed_dim == 8
    assert clip.weights_path() == root / "c" / "w.safetensors"
    assert clip.path(clip.config or "") == root / "c" / "cfg.json"
    faces = ms.first("insightface")
    assert faces is not None and faces.onnx_files() == [root / "f" / "pack" / "det.onnx",
                                                        root / "f" / "pack" / "rec.onnx"]


def test_onnx_dir_from_a_folder_entry(tmp_path: Path) -> None:
    root = tmp_path / "m"
    entry = _faces(root)
    entry["files"] = {"pack": "f/pack"}
    ms = load_model_set(_write(root, [entry]))
    assert [p.name for p in ms.models[0].onnx_files()] == ["det.onnx", "rec.onnx"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.pop("files"), "missing key 'files'"),
        (lambda e: e.update(kind="resnet"), 'models[0].kind: "resnet" is not one of clip, insightface'),
        (lambda e: e.update(embed_dim=0), "models[0].embed_dim: must be >= 1, got 0"),
        (lambda e: e.update(embed_dim=True), "models[0].embed_dim: must be an integer, got bool"),
        (lambda e: e.pop("arch"), "needs 'arch'"),
        (lambda e: e.update(files={"w": "../outside.bin"}), "must be a path inside the models folder"),
        (lambda e: e.update(files={"w": "/etc/passwd"}), "must be a path inside the models folder"),
        (lambda e: e.update(files={"w": "c/missing.safetensors"}), "file 'w' (c/missing.safetensors) is missing"),
        (lambda e: e.update(config="c/nope.json"), "file config 'c/nope.json' is missing"),
        (lambda e: e.update(files={}), "models[0].files: must not be empty"),
    ],
)
def test_bad_entries_are_one_line_naming_the_model(tmp_path: Path, mutate, message: str) -> None:
    root = tmp_path / "m"
    entry = _clip(root)
    mutate(entry)
    _write(root, [entry])
    with pytest.raises(ModelsError) as err:
        load_model_set(root)
    assert message in err.value.message
    assert str(root / "models.json") in err.value.message
    assert "\n" not in err.value.message
    assert err.value.exit_code == EXIT_USAGE


def test_schema_version_duplicates_and_bad_json(tmp_path: Path) -> None:
    root = tmp_path / "m"
    _write(root, [_clip(root)], schema_version=2)
    with pytest.raises(ModelsError, match="schema_version: must be 1, got 2"):
        load_model_set(root)
    _write(root, [_clip(root), _clip(root)])
    with pytest.raises(ModelsError, match="duplicate model ids c"):
        load_model_set(root)
    (root / "models.json").write_text("{not json")
    with pytest.raises(ModelsError, match="is not valid JSON"):
        load_model_set(root)


def test_missing_dir_is_not_found_and_missing_json_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ModelsNotFound) as err:
        load_model_set(tmp_path / "absent")
    assert err.value.exit_code == EXIT_UNAVAILABLE
    with pytest.raises(ModelsError, match="models.json is missing"):
        load_model_set(tmp_path)


def test_models_dir_from_env_then_frozen_then_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODELS_ENV, raising=False)
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert find_models_dir() == (None, "none")
    with pytest.raises(ModelsNotFound, match=MODELS_ENV):
        locate_model_set()

    exe = tmp_path / "bundle" / "photo-search"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(exe))
    assert find_models_dir() == ((tmp_path / "bundle" / "models").resolve(), "frozen")

    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "elsewhere"))
    assert find_models_dir() == ((tmp_path / "elsewhere").resolve(), MODELS_ENV)


def test_fingerprint_uses_recorded_sha_and_hashes_otherwise(tmp_path: Path) -> None:
    root = tmp_path / "m"
    entry = _clip(root)
    _write(root, [entry])
    computed = load_model_set(root).models[0].fingerprint()
    real = hashlib.sha256(b"weights").hexdigest()
    assert file_sha256(root / "c" / "w.safetensors") == real
    # Recording the real hash gives the same fingerprint as hashing the file ...
    _write(root, [{**entry, "sha256": {"c/w.safetensors": real.upper()}}])
    assert load_model_set(root).models[0].fingerprint() == computed
    # ... and a different recorded hash gives a different one.
    _write(root, [{**entry, "sha256": {"c/w.safetensors": "0" * 64}}])
    assert load_model_set(root).models[0].fingerprint() != computed


def test_clip_config_from_key_or_found_among_files(tmp_path: Path) -> None:
    root = tmp_path / "m"
    entry = _clip(root)
    assert load_model_set(_write(root, [entry])).models[0].config_path() == root / "c" / "cfg.json"

    # the freeze stage's layout: no "config" key; the hub-layout config is one of the files, beside a golden
    model_cfg = {"embed_dim": 8, "vision_cfg": {}, "text_cfg": {}}
    (root / "c" / "golden.json").write_text(json.dumps({"embeddings": []}))
    (root / "c" / "z_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    files = {"w.safetensors": "c/w.safetensors", "golden.json": "c/golden.json", "z_config.json": "c/z_config.json"}
    entry = {k: v for k, v in entry.items() if k != "config"} | {"files": files}
    assert load_model_set(_write(root, [entry])).models[0].config_path() == root / "c" / "z_config.json"
    # a role says it outright
    entry["roles"] = {"golden.json": "config"}
    assert load_model_set(_write(root, [entry])).models[0].config_path() == root / "c" / "golden.json"

    # a built-in architecture needs none
    entry = {k: v for k, v in entry.items() if k != "roles"} | {"files": {"w.safetensors": "c/w.safetensors"}}
    assert load_model_set(_write(root, [entry])).models[0].config_path() is None


def test_missing_model_file_says_what_to_do(tmp_path: Path) -> None:
    root = tmp_path / "m"
    entry = _clip(root)
    _write(root, [entry])
    (root / "c" / "w.safetensors").unlink()
    with pytest.raises(ModelsError) as err:
        load_model_set(root)
    assert "file 'w.safetensors' (c/w.safetensors) is missing" in err.value.message
    assert "reinstall the bundle, or set MLFREEZE_MODELS_DIR" in err.value.message
