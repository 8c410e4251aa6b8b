"""mlfreeze_runtime.clip.embedder_for: torch where it is installed, the ONNX towers where it is not
(the slim flavor), from the same models.json entry, embedding alike."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "src" / "mlfreeze" / "specs" / "demo"
FILES = {"demo_clip.safetensors": "", "demo_clip_config.json": "config", "demo_clip_image.onnx": "image_onnx",
         "demo_clip_text.onnx": "text_onnx"}
CAPTIONS = ["a red circle", "a blue square", "a green triangle"]

SCRIPT = """
import importlib.abc, json, sys
BLOCKED = {"torch", "torchvision", "open_clip", "timm"}
class Block(importlib.abc.MetaPathFinder):  # as in a slim bundle: these cannot be imported
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not in this bundle")
sys.meta_path.insert(0, Block())
from mlfreeze_runtime import clip, modelindex
entry = modelindex.read_models_index(sys.argv[2]).first("clip")
emb = clip.embedder_for(entry, providers=["CPUExecutionProvider"])
print(json.dumps({"class": type(emb).__name__, "text": emb.embed_texts(json.loads(sys.argv[3])).tolist(),
                  "torch": [m for m in sys.modules if m.split(".")[0] in BLOCKED]}))
"""


@pytest.fixture
def models(tmp_path: Path) -> Path:
    (tmp_path / "demo-clip").mkdir()
    for name in FILES:
        shutil.copyfile(DEMO / name, tmp_path / "demo-clip" / name)
    entry = {"id": "demo-clip", "kind": "clip", "arch": "mlfreeze-demo-clip", "embed_dim": 512,
             "files": {n: f"demo-clip/{n}" for n in FILES}, "roles": dict(FILES), "verify": {"quick_gelu": True}}
    (tmp_path / "models.json").write_text(json.dumps({"schema_version": 1, "set": "demo", "models": [entry]}))
    return tmp_path


def test_torch_and_onnx_embedders_agree_from_one_entry(models: Path) -> None:
    import numpy as np

    from mlfreeze_runtime import clip, modelindex

    entry = modelindex.read_models_index(models).first("clip")
    torch_emb = clip.embedder_for(entry)
    assert isinstance(torch_emb, clip.ClipEmbedder)
    want = torch_emb.embed_texts(CAPTIONS)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT), str(models), json.dumps(CAPTIONS)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["class"] == "OnnxClipEmbedder" and got["torch"] == []
    cos = np.sum(np.asarray(got["text"]) * want, axis=1)
    assert cos.min() >= 0.9999, cos


def test_no_torch_and_no_towers_is_one_line(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlfreeze_runtime import clip, modelindex

    doc = json.loads((models / "models.json").read_text())
    doc["models"][0]["roles"] = {"demo_clip_config.json": "config"}
    (models / "models.json").write_text(json.dumps(doc))
    monkeypatch.setattr(clip, "torch_clip_available", lambda: False)
    with pytest.raises(clip.ClipLoadError, match="lists no ONNX towers .*run `mlfreeze export`"):
        clip.embedder_for(modelindex.read_models_index(models).first("clip"))
