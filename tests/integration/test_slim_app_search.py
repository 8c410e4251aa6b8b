"""The example app's search through torch CLIP (a full bundle's models/) and through the ONNX towers
(a slim bundle's models/): the same text query returns the same top-5 images from a folder of the
probe images. Both models folders are written by the freeze stage's own functions (artifacts
chosen by role per flavor), and the app runs in-process, as `photo-search index` / `search`."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("onnxruntime")
pytest.importorskip("faiss")
Image = pytest.importorskip("PIL.Image")

from mlfreeze.bundle.freeze import bundle_models  # noqa: E402
from mlfreeze.models.manifest import load_manifest  # noqa: E402
from mlfreeze_runtime import clip as rclip  # noqa: E402
from mlfreeze_runtime.modelindex import write_models_index  # noqa: E402
from mlfreeze_runtime.verify import onnx_checks  # noqa: E402
from mlfreeze_runtime.verify.probes import load_rgb  # noqa: E402
from photo_search.cli import main  # noqa: E402
from photo_search.models import MODELS_ENV  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "src" / "mlfreeze" / "specs" / "demo"
QUERIES = ("a red circle", "a blue triangle", "a green square")


def _models(tmp: Path, flavor: str) -> Path:
    spec = load_manifest().models["demo-clip"]
    fetched = {"demo-clip": SimpleNamespace(model=spec, bundle_files={a.file: DEMO / a.file for a in spec.artifacts})}
    models = bundle_models(fetched, flavor)
    out = tmp / flavor
    for m in models:
        for rel, src in m.files.items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(src.read_bytes())
    from mlfreeze.bundle.freeze import models_index_entries

    write_models_index(out, models_index_entries(models), set_name="demo")
    return out


def _search(capsys, folder: Path, index: Path, query: str) -> list[str]:
    assert main(["search", query, "-k", "5", "--index", str(index), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "clip"  # embeddings, not file names
    return [Path(r["path"]).name for r in doc["results"]]


def test_full_and_slim_models_return_the_same_top5(tmp_path: Path, monkeypatch, capsys) -> None:
    spec = load_manifest().models["demo-clip"]
    names, _ = onnx_checks.probes(spec.verify)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(names):
        Image.fromarray(load_rgb(name)).save(folder / f"{i:02d}.png")
    monkeypatch.setenv("FORCE_CPU", "1")
    results = {}
    for flavor in ("full", "slim"):
        models = _models(tmp_path, flavor)
        files = set(json.loads((models / "models.json").read_text())["models"][0]["roles"].values())
        # slim: the towers and their agreement record with torch (checked by the frozen self-test)
        assert files == ({"weights", "config"} if flavor == "full" else {"image_onnx", "text_onnx", "agreement"})
        monkeypatch.setenv(MODELS_ENV, str(models))
        # a slim bundle has no torch: the runtime's loader then serves the ONNX towers
        monkeypatch.setattr(rclip, "torch_clip_available", lambda f=flavor: f == "full")
        index = tmp_path / f"index-{flavor}"
        assert main(["index", str(folder), "--index", str(index), "--json"]) == 0
        capsys.readouterr()
        results[flavor] = {q: _search(capsys, folder, index, q) for q in QUERIES}
    assert all(len(r) == 5 for r in results["full"].values())
    assert results["full"] == results["slim"]


def test_init_scaffold_serves_onnx_clip_without_torch(tmp_path: Path) -> None:
    """The `mlfreeze init` app, given a slim models folder in a process where torch and open_clip
    cannot be imported, answers the self-test's probe through the ONNX towers."""
    import subprocess
    import sys

    import numpy as np

    from mlfreeze_runtime.onnx_clip import OnnxClipEmbedder

    template = (ROOT / "src" / "mlfreeze" / "templates" / "app.py.txt").read_text(encoding="utf-8")
    app = tmp_path / "clipdemo.py"
    app.write_text(template.replace("__APP__", "clipdemo"), encoding="utf-8")
    models = _models(tmp_path, "slim")
    image = tmp_path / "probe.png"
    Image.fromarray(load_rgb("synthetic:shape/red/circle")).save(image)
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"texts": ["a red circle", "a blue square"], "images": [str(image)]}))
    code = ("import runpy, sys; sys.modules.update({'torch': None, 'open_clip': None}); "
            f"sys.argv = [{str(app)!r}, '--mlfreeze-probe', {str(request)!r}]; "
            f"runpy.run_path({str(app)!r}, run_name='__main__')")
    env = {"MLFREEZE_MODELS_DIR": str(models), "FORCE_CPU": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    onnx = OnnxClipEmbedder(DEMO / "demo_clip_image.onnx", DEMO / "demo_clip_text.onnx")
    want_t = onnx.texts(["a red circle", "a blue square"])
    want_i = onnx.images([load_rgb("synthetic:shape/red/circle")])
    assert np.min(np.sum(np.asarray(out["text"]) * want_t, axis=1)) > 0.9999
    assert np.min(np.sum(np.asarray(out["image"]) * want_i, axis=1)) > 0.9999
