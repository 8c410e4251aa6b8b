"""Provider options reach the real onnxruntime sessions insightface creates: the path that carries
``DEVICE=cuda:N`` to the CUDA provider as ``device_id``. Without a GPU here onnxruntime falls back
to the CPU; the arguments each session was created with are what this checks."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("insightface")
pytest.importorskip("onnxruntime")

DEMO_FACES = Path(__file__).resolve().parents[2] / "src" / "mlfreeze" / "specs" / "demo" / "faces"


def test_provider_options_reach_every_face_session(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    from mlfreeze_runtime.faces import load_face_analysis

    sessions: dict[str, dict] = {}
    real_init = onnxruntime.InferenceSession.__init__

    def recording_init(self, path, *args, **kwargs):  # the real session, with its arguments recorded
        sessions[Path(path).name] = kwargs
        real_init(self, path, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "__init__", recording_init)
    options = [{"device_id": "1"}, {}]  # what DEVICE=cuda:1 gives; onnxruntime falls back to CPU here
    app = load_face_analysis(DEMO_FACES, providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
                             provider_options=options, det_size=(320, 320), det_thresh=0.4)
    assert set(app.models) == {"detection", "recognition"}
    assert set(sessions) == {"det_10g.onnx", "w600k_r50.onnx"}
    for name, kwargs in sessions.items():
        assert kwargs["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"], name
        assert kwargs["provider_options"] == options, name
    det = app.models["detection"]
    assert tuple(det.input_size) == (320, 320) and det.det_thresh == pytest.approx(0.4)


def test_default_options_come_from_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlfreeze_runtime import device, faces

    seen = {}
    real = device.onnx_provider_options

    def spy(providers, dev):
        seen["args"] = (list(providers), dev)
        return real(providers, dev)

    monkeypatch.setattr(device, "onnx_provider_options", spy)
    monkeypatch.setenv("DEVICE", "cpu")
    device.reset()
    try:
        faces.load_face_analysis(DEMO_FACES, providers=["CPUExecutionProvider"])
    finally:
        device.reset()
    assert seen["args"] == (["CPUExecutionProvider"], "cpu")
