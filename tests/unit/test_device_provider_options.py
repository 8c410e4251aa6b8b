"""DEVICE=cuda:N reaches onnxruntime as the CUDA provider's device_id (pure functions)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mlfreeze_runtime import device

CUDA, TRT, COREML, CPU = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "CoreMLExecutionProvider",
                          "CPUExecutionProvider")


@pytest.mark.parametrize(
    ("providers", "dev", "want"),
    [
        ([CUDA, CPU], "cuda:1", [{"device_id": "1"}, {}]),
        ([CUDA, CPU], "cuda:3", [{"device_id": "3"}, {}]),
        ([CUDA, CPU], "cuda", [{"device_id": "0"}, {}]),
        ([TRT, CUDA, CPU], "cuda:2", [{"device_id": "2"}, {"device_id": "2"}, {}]),
        ([CPU], "cuda:1", [{}]),
        ([CUDA, CPU], "cpu", [{}, {}]),
        ([COREML, CPU], "mps", [{}, {}]),
    ],
)
def test_provider_options_follow_the_torch_device(providers: list[str], dev: str, want: list[dict]) -> None:
    assert device.onnx_provider_options(providers, dev) == want


def test_cuda_index_parses_only_cuda_devices() -> None:
    assert device.cuda_index("cuda") == 0 and device.cuda_index("cuda:12") == 12
    with pytest.raises(ValueError, match="'mps' is not a CUDA device"):
        device.cuda_index("mps")


def test_session_config_for_cuda_1_on_a_two_gpu_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = SimpleNamespace(__version__="9", version=SimpleNamespace(cuda="13.0"),
                            cuda=SimpleNamespace(is_available=lambda: True, device_count=lambda: 2,
                                                 get_device_name=lambda i: f"GPU{i}"),
                            backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: False)))
    ort = SimpleNamespace(__version__="1", get_available_providers=lambda: [CUDA, CPU])
    monkeypatch.setattr(device, "_torch", lambda: torch)
    monkeypatch.setattr(device, "_onnxruntime", lambda: ort)
    for var in ("FORCE_CPU", "ONNX_PROVIDERS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DEVICE", "cuda:1")
    device.reset()
    try:
        assert device.get_onnx_session_config() == ([CUDA, CPU], [{"device_id": "1"}, {}])
        info = device.get_device_info()
        assert info["device"] == "cuda:1" and info["onnx_provider_options"] == [{"device_id": "1"}, {}]
        monkeypatch.setenv("DEVICE", "cpu")
        device.reset()
        assert device.get_onnx_session_config() == ([CPU], [{}])
    finally:
        device.reset()
