"""src/mlfreeze/platforms/device.py: every branch, with stand-in torch/onnxruntime modules."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mlfreeze_runtime import device


def fake_torch(cuda: int = 0, mps: bool = False, broken: bool = False) -> SimpleNamespace:
    def available() -> bool:
        if broken:
            raise RuntimeError("driver too old")
        return cuda > 0

    return SimpleNamespace(
        __version__="9.9.9",
        version=SimpleNamespace(cuda="13.0" if cuda else None),
        cuda=SimpleNamespace(is_available=available, device_count=lambda: cuda,
                             get_device_name=lambda i: f"GPU{i}"),
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: mps)),
    )


def fake_ort(*providers: str) -> SimpleNamespace:
    return SimpleNamespace(__version__="1.0", get_available_providers=lambda: list(providers))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    for var in ("DEVICE", "MODEL_DEVICE", "FORCE_CPU", "ONNX_PROVIDERS"):
        monkeypatch.delenv(var, raising=False)
    device.reset()

    def setup(torch=None, ort=None, **variables: str):
        monkeypatch.setattr(device, "_torch", lambda: torch)
        monkeypatch.setattr(device, "_onnxruntime", lambda: ort)
        for k, v in variables.items():
            monkeypatch.setenv(k, v)
        device.reset()

    yield setup
    device.reset()


def test_no_torch_is_cpu(env):
    env(torch=None)
    assert device.get_device() == "cpu"


def test_auto_prefers_cuda_then_mps_then_cpu(env):
    env(torch=fake_torch(cuda=2, mps=True))
    assert device.get_device() == "cuda"
    env(torch=fake_torch(cuda=0, mps=True))
    assert device.get_device() == "mps"
    env(torch=fake_torch(cuda=0, mps=False))
    assert device.get_device() == "cpu"


def test_model_device_is_read_when_device_is_unset(env):
    env(torch=fake_torch(cuda=1), MODEL_DEVICE="cpu")
    assert device.get_device() == "cpu"
    env(torch=fake_torch(cuda=1), MODEL_DEVICE="cpu", DEVICE="auto")  # DEVICE wins
    assert device.get_device() == "cuda"
    env(torch=fake_torch(cuda=2), DEVICE="cuda:1", MODEL_DEVICE="cpu")
    assert device.get_device() == "cuda:1"
    env(torch=fake_torch(cuda=0), DEVICE="", MODEL_DEVICE="gpu")
    with pytest.raises(ValueError, match="DEVICE='gpu' is not a device"):
        device.get_device()


def test_force_cpu_beats_cuda(env):
    env(torch=fake_torch(cuda=1), FORCE_CPU="1")
    assert device.get_device() == "cpu"


def test_device_beats_force_cpu(env):
    env(torch=fake_torch(cuda=1), ort=fake_ort("CUDAExecutionProvider", "CPUExecutionProvider"),
        FORCE_CPU="1", DEVICE="cuda:0")
    assert device.get_device() == "cuda:0"
    assert device.get_onnx_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]  # both halves agree


def test_device_cpu_explicit(env):
    env(torch=fake_torch(cuda=1), DEVICE="CPU")
    assert device.get_device() == "cpu"


def test_invalid_device_names_allowed_forms(env):
    env(torch=fake_torch(), DEVICE="tpu")
    with pytest.raises(ValueError, match=r"auto, cpu, cuda, cuda:N.*mps"):
        device.get_device()


@pytest.mark.parametrize("value", ["cuda:", "cuda:-1", "cuda:x", "gpu0"])
def test_malformed_cuda_forms_rejected(env, value):
    env(torch=fake_torch(cuda=1), DEVICE=value)
    with pytest.raises(ValueError, match="allowed"):
        device.get_device()


def test_cuda_index_checked_against_count(env):
    env(torch=fake_torch(cuda=2), DEVICE="cuda:1")
    assert device.get_device() == "cuda:1"
    env(torch=fake_torch(cuda=2), DEVICE="cuda:2")
    with pytest.raises(ValueError, match=r"only 2 CUDA device\(s\)"):
        device.get_device()


def test_cuda_requested_without_cuda(env):
    env(torch=fake_torch(cuda=0), DEVICE="cuda")
    with pytest.raises(ValueError, match="no CUDA device"):
        device.get_device()
    env(torch=None, DEVICE="cuda")
    with pytest.raises(ValueError, match="not installed"):
        device.get_device()


def test_mps_requested(env):
    env(torch=fake_torch(mps=True), DEVICE="mps")
    assert device.get_device() == "mps"
    env(torch=fake_torch(mps=False), DEVICE="mps")
    with pytest.raises(ValueError, match="MPS is not available"):
        device.get_device()


def test_broken_driver_reads_as_cpu(env):
    env(torch=fake_torch(cuda=1, broken=True))
    assert device.get_device() == "cpu"


def test_providers_without_onnxruntime(env):
    env(torch=None, ort=None)
    assert device.get_onnx_providers() == ["CPUExecutionProvider"]


def test_providers_cuda_only_with_a_cuda_device(env):
    gpu_build = fake_ort("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    env(torch=fake_torch(cuda=1), ort=gpu_build)
    assert device.get_onnx_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    # onnxruntime-gpu on a machine without a GPU still lists CUDA: do not pick it
    env(torch=fake_torch(cuda=0), ort=gpu_build)
    assert device.get_onnx_providers() == ["CPUExecutionProvider"]


def test_providers_coreml_then_cpu(env):
    env(torch=fake_torch(mps=True), ort=fake_ort("CoreMLExecutionProvider", "CPUExecutionProvider"))
    assert device.get_onnx_providers() == ["CoreMLExecutionProvider", "CPUExecutionProvider"]


def test_force_cpu_keeps_onnx_on_cpu(env):
    env(torch=fake_torch(mps=True), ort=fake_ort("CoreMLExecutionProvider", "CPUExecutionProvider"),
        FORCE_CPU="yes")
    assert device.get_onnx_providers() == ["CPUExecutionProvider"]


def test_provider_override(env):
    ort = fake_ort("CUDAExecutionProvider", "CPUExecutionProvider")
    env(torch=fake_torch(cuda=0), ort=ort, ONNX_PROVIDERS="CPUExecutionProvider, CUDAExecutionProvider")
    assert device.get_onnx_providers() == ["CPUExecutionProvider", "CUDAExecutionProvider"]
    env(torch=fake_torch(), ort=ort, ONNX_PROVIDERS="DmlExecutionProvider")
    with pytest.raises(ValueError, match="DmlExecutionProvider.*available: CUDAExecutionProvider"):
        device.get_onnx_providers()


def test_results_are_cached_until_reset(env, monkeypatch):
    env(torch=fake_torch(cuda=1))
    assert device.get_device() == "cuda"
    monkeypatch.setenv("DEVICE", "cpu")
    assert device.get_device() == "cuda"  # cached
    device.reset()
    assert device.get_device() == "cpu"


def test_device_info(env):
    env(torch=fake_torch(cuda=2), ort=fake_ort("CUDAExecutionProvider", "CPUExecutionProvider"))
    info = device.get_device_info()
    assert info["device"] == "cuda"
    assert info["cuda_devices"] == ["GPU0", "GPU1"]
    assert info["torch"] == "9.9.9" and info["torch_cuda"] == "13.0"
    assert info["onnx_providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    info["device"] = "mutated"
    assert device.get_device_info()["device"] == "cuda"


def test_device_info_reports_invalid_device_instead_of_raising(env):
    env(torch=fake_torch(), DEVICE="tpu")
    info = device.get_device_info()
    assert info["device"] is None and "allowed" in info["error"]
