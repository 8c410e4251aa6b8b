"""The lite bundle's behaviour in a real subprocess: a Python without torch, with every ML
module blocked, so only the standard library is there (as in the lite bundle)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("numpy", "PIL", "torch", "torchvision", "open_clip", "faiss", "onnxruntime", "insightface", "cv2",
           "platformdirs")
# The interpreter the ML venv was made from: it has no torch (checked below).
BASE_PYTHON = str(Path(getattr(sys, "_base_executable", "") or sys.executable))

BOOT = f"""
import runpy, sys
BLOCKED = {BLOCKED!r}
class _Lite:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the lite bundle)")
        return None
sys.meta_path.insert(0, _Lite())
sys.path[:0] = [{str(ROOT / "examples")!r}, {str(ROOT / "src")!r}]  # the app and the runtime the bundle collects
runpy.run_module("photo_search", run_name="__main__", alter_sys=True)
"""


def lite(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFREEZE_", "PHOTO_SEARCH_"))}
    full_env.update(env or {})
    return subprocess.run([BASE_PYTHON, "-I", "-c", BOOT, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=120)


def test_base_python_really_has_no_torch() -> None:
    r = subprocess.run([BASE_PYTHON, "-I", "-c", "import torch"], capture_output=True, text=True, timeout=60)
    if r.returncode == 0:
        pytest.skip(f"{BASE_PYTHON} has torch; the import blocker alone stands in for the lite bundle")
    assert "No module named 'torch'" in r.stderr


def test_package_imports_only_the_standard_library() -> None:
    code = (
        f"import sys; sys.path[:0] = [{str(ROOT / 'examples')!r}, {str(ROOT / 'src')!r}]\n"
        "before = set(sys.modules)\n"
        "import photo_search.cli, photo_search.embed, photo_search.health, photo_search.index, photo_search.models\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(new - set(sys.stdlib_module_names)))\n"
    )
    r = subprocess.run([BASE_PYTHON, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['mlfreeze_runtime', 'photo_search']"


def test_health_without_ml(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "c").mkdir(parents=True)
    (models / "c" / "w.safetensors").write_bytes(b"x")
    (models / "models.json").write_text(json.dumps({"schema_version": 1, "set": "demo", "models": [
        {"id": "demo-clip", "kind": "clip", "arch": "tiny", "embed_dim": 8, "files": {"w": "c/w.safetensors"}}]}))
    r = lite("--health", env={"MLFREEZE_MODELS_DIR": str(models)})
    assert r.returncode == 0, r.stderr
    h = json.loads(r.stdout)
    assert h["ml_available"] is False
    # the CLIP part may run on torch or on onnxruntime (slim): its first missing module is named
    assert "No module named 'numpy'" in h["ml_reason"] and "(not in the lite bundle)" in h["ml_reason"]
    assert h["models_dir"] == str(models.resolve()) and h["models_dir_source"] == "MLFREEZE_MODELS_DIR"
    assert h["model_set"] == "demo" and [m["id"] for m in h["models"]] == ["demo-clip"]
    assert h["device"]["device"] == "cpu"
    assert set(h) >= {"app", "version", "device", "models_dir", "models", "ml_available", "ml_reason"}


def test_index_search_faces_without_ml(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("Mountain Lake.jpg", "mountain_hut.png", "lake.webp", "readme.md"):
        (photos / name).write_bytes(b"x")
    idx = tmp_path / "idx"
    r = lite("index", str(photos), "--index", str(idx))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"indexed 3 images from {photos.resolve()}")
    assert "no models (file names only)" in r.stdout
    r = lite("search", "mountain lake", "--index", str(idx), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["mode"] == "names"
    assert [(x["score"], Path(x["path"]).name) for x in res["results"]] == [
        (1.0, "Mountain Lake.jpg"), (0.5, "lake.webp"), (0.5, "mountain_hut.png")]
    r = lite("faces", str(photos))
    assert r.returncode == 3
    assert r.stderr.strip().startswith("photo-search: error: face features unavailable: cannot import")
    assert len(r.stderr.strip().splitlines()) == 1


def test_search_on_a_clip_index_falls_back_to_names(tmp_path: Path) -> None:
    idx = tmp_path / "idx"
    idx.mkdir()
    images = [str(tmp_path / "red_car.png"), str(tmp_path / "blue_sky.png")]
    sig = {"id": "demo-clip", "kind": "clip", "arch": "tiny", "embed_dim": 8, "sha256": "a" * 64}
    (idx / "index.json").write_text(json.dumps({"format": 1, "models": {"clip": sig, "faces": None},
                                                "images": images, "faces": []}))
    r = lite("search", "sky", "--index", str(idx))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"1.0000  {images[1]}"]
    assert "CLIP search unavailable" in r.stderr and "matching file names instead" in r.stderr
    # and indexing into it without the models it was built with is refused, leaving it as it was
    before = (idx / "index.json").read_bytes()
    r = lite("index", str(tmp_path), "--index", str(idx))
    assert r.returncode == 2
    assert "was built with clip model demo-clip (sha256 aaaaaaaaaaaa); this run has no models" in r.stderr
    assert (idx / "index.json").read_bytes() == before


def test_default_index_is_per_user_data_dir(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(b"x")
    r = lite("index", str(photos), env={"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "data")})
    assert r.returncode == 0, r.stderr
    if sys.platform.startswith("linux"):
        assert (tmp_path / "data" / "photo-search" / "index" / "index.json").is_file()


@pytest.mark.parametrize("how", ["script", "module"])
def test_entry_points_start(how: str, tmp_path: Path) -> None:
    # the app and the runtime on the path, as the build's pathex and the runtime hook provide them
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'examples'}{os.pathsep}{ROOT / 'src'}"}
    if how == "script":  # how PyInstaller runs examples/photo_search/__main__.py
        cmd = [BASE_PYTHON, "-s", str(ROOT / "examples" / "photo_search" / "__main__.py"), "--version"]
    else:
        cmd = [BASE_PYTHON, "-s", "-m", "photo_search", "--version"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "photo-search 0.1.0"
