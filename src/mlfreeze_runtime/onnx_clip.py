"""CLIP on onnxruntime: the torch-free embedder behind the same interface as the torch one.

:class:`OnnxClipEmbedder` offers what ``mlfreeze_runtime.clip.ClipEmbedder`` offers:
``images(rgb_images, normalize=True)`` and ``texts(captions, normalize=True)`` returning
``(N, embed_dim)`` float32 numpy arrays, unit-normalised along the last axis unless
``normalize=False`` (``embed_images`` / ``embed_texts`` are the same calls). Images are PIL images
or ``H x W x 3`` uint8 arrays; preprocessing is :mod:`mlfreeze_runtime.preprocess_np`, tokens
come from :mod:`mlfreeze_runtime.tokenizer`; no torch, torchvision or open_clip is imported.

The two ONNX files are the towers written by ``mlfreeze export`` (src/mlfreeze/models/export.py): the image
tower maps ``pixels`` ``(N, 3, S, S)`` float32 to ``embedding`` ``(N, D)``, the text tower maps
``input_ids`` ``(N, context_length)`` int64 to ``embedding`` ``(N, D)``, both un-normalised (the
model's ``encode_image`` / ``encode_text``). Each file describes itself in its ONNX metadata
(``metadata_props``, keys in :data:`META_KEYS`): tower, image size, preprocessing config, context
length, embedding size and the source model, so an embedder needs nothing but the two files.
Execution providers: ``providers`` if given, else ``mlfreeze_runtime.device.get_onnx_session_config()``
(the providers and their options, e.g. the CUDA ``device_id`` of ``DEVICE=cuda:N``).

Provenance: ``expected_source`` (the manifest's ``derived_from``, ``"<model id>@<weights sha256>"``)
is compared with the source each tower records; towers exported from other weights (another
training, another checkpoint) are refused at load, before anything is embedded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

META_TOWER = "mlfreeze.tower"
META_IMAGE_SIZE = "mlfreeze.image_size"
META_PREPROCESS = "mlfreeze.preprocess_cfg"
META_CONTEXT = "mlfreeze.context_length"
META_EMBED_DIM = "mlfreeze.embed_dim"
META_SOURCE = "mlfreeze.derived_from"
META_KEYS = (META_TOWER, META_IMAGE_SIZE, META_PREPROCESS, META_CONTEXT, META_EMBED_DIM, META_SOURCE)
IMAGE_INPUT, TEXT_INPUT, OUTPUT = "pixels", "input_ids", "embedding"
DEFAULT_BATCH = 32


class OnnxClipError(RuntimeError):
    """An ONNX CLIP tower is missing, unreadable, or not an ``mlfreeze export`` tower of the right kind."""


def _session(path: Path, providers: Sequence[str] | None, tower: str) -> tuple[Any, dict[str, str]]:
    import onnxruntime as ort

    options: list[dict[str, str]] | None = None
    if providers is None:
        from mlfreeze_runtime.device import get_onnx_session_config

        providers, options = get_onnx_session_config()
    if not Path(path).is_file():
        raise OnnxClipError(f"ONNX {tower} tower {path} is missing")
    try:
        sess = ort.InferenceSession(str(path), providers=list(providers), provider_options=options)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise OnnxClipError(f"ONNX {tower} tower {path} cannot be loaded: {str(exc).splitlines()[0]}") from None
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    if meta.get(META_TOWER) != tower:
        raise OnnxClipError(f"{path} is not an mlfreeze {tower} tower (metadata {META_TOWER}="
                            f"{meta.get(META_TOWER)!r}); export it with `mlfreeze export`")
    return sess, meta


def _l2(x: Any) -> Any:
    import numpy as np

    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, np.finfo(np.float32).tiny)).astype(np.float32, copy=False)


class OnnxClipEmbedder:
    """Unit-normalised CLIP image and text embeddings from the two exported towers.

    Raises :class:`OnnxClipError` if a file is missing, does not load, is not the tower its
    argument says, or (``expected_source`` given) records another source than the manifest pins;
    ``mlfreeze_runtime.tokenizer.TokenizerError`` if the vocabulary is not the
    pinned one; ``mlfreeze_runtime.preprocess_np.PreprocessError`` for an unsupported transform.
    """

    def __init__(self, image_onnx: Path, text_onnx: Path, *, providers: Sequence[str] | None = None,
                 vocab: Path | None = None, batch_size: int = DEFAULT_BATCH,
                 expected_source: str | None = None) -> None:
        from mlfreeze_runtime.preprocess_np import ImageTransform
        from mlfreeze_runtime.tokenizer import ClipTokenizer

        self.image_session, image_meta = _session(Path(image_onnx), providers, "image")
        self.text_session, text_meta = _session(Path(text_onnx), providers, "text")
        if image_meta.get(META_SOURCE) != text_meta.get(META_SOURCE):
            raise OnnxClipError(f"the towers come from different models: image {image_meta.get(META_SOURCE)!r}, "
                                f"text {text_meta.get(META_SOURCE)!r}")
        if expected_source and image_meta.get(META_SOURCE) != expected_source:
            raise OnnxClipError(f"the ONNX towers were exported from {image_meta.get(META_SOURCE)!r}, not from the "
                                f"pinned weights ({expected_source}): towers of another model or training; "
                                "re-export them from the pinned weights (`mlfreeze export`)")
        try:
            self.image_size = int(image_meta[META_IMAGE_SIZE])
            self.preprocess_cfg: Mapping[str, Any] = json.loads(image_meta[META_PREPROCESS])
            self.context_length = int(text_meta[META_CONTEXT])
            self.embed_dim = int(image_meta[META_EMBED_DIM])
        except (KeyError, ValueError) as exc:
            raise OnnxClipError(f"ONNX CLIP metadata incomplete ({exc}); re-export with `mlfreeze export`") from None
        self.derived_from = image_meta.get(META_SOURCE, "")
        self.providers = list(self.image_session.get_providers())
        self.transform = ImageTransform(self.image_size, self.preprocess_cfg)
        self.tokenizer = ClipTokenizer(self.context_length, vocab=vocab)
        self.batch_size = max(1, int(batch_size))

    def _run(self, session: Any, name: str, batch: Any) -> Any:
        import numpy as np

        parts = [session.run([OUTPUT], {name: batch[i:i + self.batch_size]})[0]
                 for i in range(0, len(batch), self.batch_size)]
        out = np.concatenate(parts) if parts else np.zeros((0, self.embed_dim), np.float32)
        return out.astype(np.float32, copy=False)

    def images(self, rgb_images: Sequence[Any], *, normalize: bool = True) -> Any:
        """``(N, D)`` float32 embeddings of PIL images or ``H x W x 3`` uint8 arrays."""
        out = self._run(self.image_session, IMAGE_INPUT, self.transform.batch(list(rgb_images)))
        return _l2(out) if normalize else out

    def texts(self, captions: Sequence[str], *, normalize: bool = True) -> Any:
        """``(N, D)`` float32 embeddings of captions (tokenized as open_clip does)."""
        out = self._run(self.text_session, TEXT_INPUT, self.tokenizer(list(captions)))
        return _l2(out) if normalize else out

    embed_images = images
    embed_texts = texts
