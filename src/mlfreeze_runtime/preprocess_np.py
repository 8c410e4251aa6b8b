"""open_clip's inference image transform with PIL and numpy only (no torch, no torchvision).

Same steps, in the same order, as ``open_clip.transform.image_transform_v2(cfg, is_train=False)``
for a square ``image_size``:

1. ``resize_mode="shortest"`` (CLIP's default): resize so the short side is ``image_size`` and the
   long side ``int(image_size * long / short)`` (torchvision's rounding), then center-crop
   ``image_size`` x ``image_size`` with torchvision's offsets ``int(round((h - size) / 2))``;
   ``resize_mode="squash"``: resize to ``image_size`` x ``image_size``.
   The resize is PIL's ``Image.resize`` with the config's ``interpolation`` (``bicubic`` for OpenAI
   CLIP, or ``bilinear``), exactly the call torchvision makes for a PIL image.
2. convert to RGB *after* the resize (open_clip's ``MaybeConvertMode``), so grey, palette and RGBA
   inputs are resized in their own mode as open_clip does;
3. float32 in [0, 1] (``/ 255``), then ``(x - mean) / std`` per channel, channels first.

Tolerance against open_clip's transform: max abs difference <= 1e-6 per normalised value
(measured 0.0 on the scikit-image photos and odd sizes in tests/integration/test_slim_preprocess.py;
the bound leaves room for float32 operation order). ``resize_mode="longest"`` (pad to square) is
not ported: :class:`PreprocessError` says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
TOLERANCE = 1e-6  # max abs difference per normalised value vs open_clip (see the module docstring)
INTERPOLATIONS = ("bicubic", "bilinear")
RESIZE_MODES = ("shortest", "squash")


class PreprocessError(ValueError):
    """The preprocess config asks for something this transform does not do."""


class ImageTransform:
    """PIL image -> ``(3, image_size, image_size)`` float32 numpy array, open_clip's inference transform.

    ``preprocess_cfg``: open_clip's keys ``mean``, ``std``, ``interpolation``, ``resize_mode``
    (others are ignored; missing ones default to OpenAI CLIP's). Raises :class:`PreprocessError`
    for an interpolation or resize mode it does not implement.
    """

    def __init__(self, image_size: int, preprocess_cfg: Mapping[str, Any] | None = None) -> None:
        import numpy as np

        cfg = dict(preprocess_cfg or {})
        self.image_size = int(image_size)
        self.interpolation = str(cfg.get("interpolation") or "bicubic")
        self.resize_mode = str(cfg.get("resize_mode") or "shortest")
        if self.interpolation not in INTERPOLATIONS:
            raise PreprocessError(f"interpolation {self.interpolation!r} is not supported "
                                  f"(supported: {', '.join(INTERPOLATIONS)})")
        if self.resize_mode not in RESIZE_MODES:
            raise PreprocessError(f"resize_mode {self.resize_mode!r} is not supported by the torch-free "
                                  f"transform (supported: {', '.join(RESIZE_MODES)})")
        mean = cfg.get("mean") or OPENAI_MEAN
        std = cfg.get("std") or OPENAI_STD
        mean = (mean,) * 3 if isinstance(mean, (int, float)) else tuple(mean)
        std = (std,) * 3 if isinstance(std, (int, float)) else tuple(std)
        if len(mean) != 3 or len(std) != 3 or any(s == 0 for s in std):
            raise PreprocessError(f"mean and std must have 3 values and std no zero (got {mean}, {std})")
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def _resample(self) -> Any:
        from PIL import Image

        return Image.Resampling.BICUBIC if self.interpolation == "bicubic" else Image.Resampling.BILINEAR

    def resize_crop(self, image: Any) -> Any:
        """The resized and cropped PIL image, before the RGB conversion."""
        size = self.image_size
        w, h = image.size
        if self.resize_mode == "squash":
            return image.resize((size, size), self._resample())
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(size * long / short)
        new_w, new_h = (size, new_long) if w <= h else (new_long, size)
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), self._resample())
        top = int(round((new_h - size) / 2.0))
        left = int(round((new_w - size) / 2.0))
        return image.crop((left, top, left + size, top + size))

    def __call__(self, image: Any) -> Any:
        import numpy as np

        rgb = self.resize_crop(image).convert("RGB")
        x = np.asarray(rgb, dtype=np.uint8).astype(np.float32).transpose(2, 0, 1) / np.float32(255)
        return ((x - self.mean) / self.std).astype(np.float32, copy=False)

    def batch(self, images: Sequence[Any]) -> Any:
        """``(N, 3, image_size, image_size)`` float32 for a sequence of PIL images or HxWx3 uint8 arrays."""
        import numpy as np
        from PIL import Image

        if not images:
            return np.zeros((0, 3, self.image_size, self.image_size), dtype=np.float32)
        return np.stack([self(im if isinstance(im, Image.Image) else Image.fromarray(im)) for im in images])
