"""OnnxClipEmbedder without torch: the pinned demo towers, and towers that do not belong together."""

from __future__ import annotations

from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mlfreeze_runtime.onnx_clip import META_PREPROCESS, META_SOURCE, OnnxClipEmbedder, OnnxClipError  # noqa: E402
from mlfreeze_runtime.verify.probes import render_shape  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "src" / "mlfreeze" / "specs" / "demo"
CPU = ["CPUExecutionProvider"]


def _edited(tmp_path: Path, key: str, value: str | None) -> Path:
    proto = onnx.load(str(DEMO / "demo_clip_text.onnx"))
    props = [(p.key, p.value) for p in proto.metadata_props if p.key != key]
    del proto.metadata_props[:]
    for k, v in props + ([(key, value)] if value is not None else []):
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    out = tmp_path / "text.onnx"
    onnx.save(proto, str(out))
    return out


def test_demo_towers_embed(tmp_path: Path) -> None:
    emb = OnnxClipEmbedder(DEMO / "demo_clip_image.onnx", DEMO / "demo_clip_text.onnx", providers=CPU)
    img = emb.images([render_shape("red", "circle"), render_shape("blue", "square")])
    txt = emb.texts(["a red circle", "a blue square"])
    assert img.shape == txt.shape == (2, 512) and img.dtype == txt.dtype == np.float32
    assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    sims = img @ txt.T
    assert sims[0, 0] > sims[0, 1] and sims[1, 1] > sims[1, 0]
    assert emb.images([]).shape == (0, 512)
    assert emb.image_size == 224 and emb.context_length == 77 and emb.preprocess_cfg["interpolation"] == "bicubic"


def test_towers_of_different_models_are_refused(tmp_path: Path) -> None:
    text = _edited(tmp_path, META_SOURCE, "demo-clip@" + "0" * 64)
    with pytest.raises(OnnxClipError, match="different models"):
        OnnxClipEmbedder(DEMO / "demo_clip_image.onnx", text, providers=CPU)


def test_missing_metadata_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "image.onnx"
    proto = onnx.load(str(DEMO / "demo_clip_image.onnx"))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != META_PREPROCESS]
    del proto.metadata_props[:]
    for k, v in kept:
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(image))
    with pytest.raises(OnnxClipError, match="metadata incomplete"):
        OnnxClipEmbedder(image, DEMO / "demo_clip_text.onnx", providers=CPU)
