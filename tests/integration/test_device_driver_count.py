"""mlfreeze_runtime.device without torch (slim bundles): CUDA devices come from the CUDA driver.

There is no GPU here, so the driver is a stand-in: a small ``libcuda.so.1`` compiled from C that
answers the four driver calls the runtime makes (cuInit, cuDeviceGetCount, cuDeviceGet,
cuDeviceGetName) for two devices. The process under test has torch blocked, as in a slim bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FAKE_DRIVER = r"""
#include <stdio.h>
int cuInit(unsigned int flags) { return 0; }
int cuDeviceGetCount(int *count) { *count = 2; return 0; }
int cuDeviceGet(int *dev, int ordinal) { *dev = ordinal; return 0; }
int cuDeviceGetName(char *name, int len, int dev) { snprintf(name, len, "Stand-in GPU %d", dev); return 0; }
"""

PROBE = r"""
import json, os, sys
sys.modules["torch"] = None  # a slim bundle has no torch
from mlfreeze_runtime import device
out = {"device": device.get_device(), "names": device.get_device_info()["cuda_devices"]}
try:
    out["providers"], out["options"] = device.get_onnx_session_config()
except ValueError as exc:
    out["error"] = str(exc)
os.environ["DEVICE"] = "cuda:2"
device.reset()
try:
    device.get_device()
except ValueError as exc:
    out["cuda2"] = str(exc)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def driver_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler for the stand-in CUDA driver")
    d = tmp_path_factory.mktemp("driver")
    (d / "fake.c").write_text(FAKE_DRIVER)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(d / "libcuda.so.1"), str(d / "fake.c")], check=True)
    return d


def _run(env_extra: dict[str, str]) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DEVICE", "FORCE_CPU", "ONNX_PROVIDERS")}
    env.update(env_extra)
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr  # stdout must be the JSON alone (preload messages go to stderr)


def test_without_torch_the_driver_count_selects_cuda(driver_dir: Path) -> None:
    out, _ = _run({"LD_LIBRARY_PATH": str(driver_dir)})
    assert out["device"] == "cuda"
    assert out["names"] == ["Stand-in GPU 0", "Stand-in GPU 1"]
    assert out["cuda2"].startswith("DEVICE=cuda:2 but only 2 CUDA device(s) exist")
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert out["providers"][0] == "CUDAExecutionProvider"
        assert out["options"][0] == {"device_id": "0"}


def test_without_a_driver_it_is_the_cpu(tmp_path: Path) -> None:
    out, _ = _run({"LD_LIBRARY_PATH": str(tmp_path)})  # no libcuda anywhere on this machine
    assert out["device"] == "cpu" and out["names"] == []
    assert out["providers"] == ["CPUExecutionProvider"]
