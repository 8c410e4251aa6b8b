"""src/mlfreeze/platforms/device.py against the torch and onnxruntime installed in this environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

CODE = "import json; from mlfreeze_runtime import device; print(json.dumps(device.get_device_info()))"


def _info(**env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("DEVICE", "FORCE_CPU", "ONNX_PROVIDERS")}
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", CODE], env=environ, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_real_torch_auto_matches_torch_itself():
    import torch

    info = _info()
    assert info["torch"] == torch.__version__
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert info["device"] == expected
    assert info["cuda_available"] == torch.cuda.is_available()


def test_real_torch_force_cpu_and_usable_device():
    import torch

    info = _info(FORCE_CPU="1")
    assert info["device"] == "cpu"
    assert info["onnx_providers"] == ["CPUExecutionProvider"]
    # the selected device really runs a computation with a known answer
    a = torch.tensor([[2.0, 1.0], [1.0, 3.0]], device=info["device"])
    b = torch.tensor([3.0, 5.0], device=info["device"])
    x = torch.linalg.solve(a, b)
    assert torch.allclose(x.cpu(), torch.tensor([0.8, 1.4]))


def test_real_torch_cuda_beyond_count_is_an_error():
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    info = _info(DEVICE=f"cuda:{n}")
    assert info["device"] is None
    assert "CUDA device" in info["error"]
