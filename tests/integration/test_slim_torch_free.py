"""The slim runtime embeds with the pinned demo exports in a process where torch cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import importlib.abc, json, sys
BLOCKED = {"torch", "torchvision", "open_clip", "timm"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
import numpy as np
from mlfreeze_runtime.onnx_clip import OnnxClipEmbedder
from mlfreeze_runtime.verify.probes import render_shape
demo = sys.argv[1] + "/src/mlfreeze/specs/demo/"
emb = OnnxClipEmbedder(demo + "demo_clip_image.onnx", demo + "demo_clip_text.onnx", providers=["CPUExecutionProvider"])
img = emb.images([render_shape("red", "circle"), render_shape("blue", "square")])
txt = emb.texts(["a red circle", "a blue square"])
print(json.dumps({"sims": (img @ txt.T).tolist(), "torch": [m for m in sys.modules if m.split(".")[0] in BLOCKED]}))
"""


def test_embeds_without_torch() -> None:
    cp = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT)], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr[-2000:]
    out = json.loads(cp.stdout.strip().splitlines()[-1])
    sims = out["sims"]
    assert out["torch"] == []
    assert sims[0][0] > sims[0][1] and sims[1][1] > sims[1][0]  # the demo CLIP matches its own probes
