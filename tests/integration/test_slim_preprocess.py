"""The numpy transform against open_clip's torchvision transform, value for value.

Real photos (scikit-image), grey and RGBA inputs, odd and tiny sizes, both orientations,
both interpolations and the squash mode. The stated tolerance is src/mlfreeze_runtime/preprocess_np.TOLERANCE.
"""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")
data = pytest.importorskip("skimage.data")
pytest.importorskip("open_clip")

from mlfreeze_runtime.clip import preprocess_for  # noqa: E402
from mlfreeze_runtime.preprocess_np import TOLERANCE, ImageTransform, PreprocessError  # noqa: E402

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def _images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(14)
    out = {name: Image.fromarray(getattr(data, name)()) for name in
           ("astronaut", "chelsea", "coffee", "rocket", "horse", "camera", "page")}
    out["rgba"] = Image.fromarray(rng.integers(0, 256, (123, 77, 4), dtype=np.uint8), "RGBA")
    for w, h in ((1, 1), (7, 300), (301, 5), (225, 224), (224, 224), (999, 333), (32, 33), (3, 2)):
        out[f"noise{w}x{h}"] = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return out


IMAGES = _images()


@pytest.mark.parametrize("cfg", [
    {"interpolation": "bicubic", "resize_mode": "shortest"},
    {"interpolation": "bilinear", "resize_mode": "shortest"},
    {"interpolation": "bicubic", "resize_mode": "squash"},
])
@pytest.mark.parametrize("size", [224, 32])
def test_matches_open_clip_transform(cfg: dict, size: int) -> None:
    full = {"mean": MEAN, "std": STD, **cfg}
    reference = preprocess_for(full, size)
    ours = ImageTransform(size, full)
    worst = 0.0
    for name, image in IMAGES.items():
        want = reference(image).numpy()
        got = ours(image)
        assert got.shape == want.shape == (3, size, size) and got.dtype == np.float32, name
        worst = max(worst, float(np.abs(got - want).max()))
    assert worst <= TOLERANCE


def test_a_wrong_interpolation_is_outside_the_tolerance() -> None:
    """The comparison has teeth: bilinear instead of bicubic is far outside it on a real photo."""
    full = {"mean": MEAN, "std": STD, "interpolation": "bicubic"}
    want = preprocess_for(full, 224)(IMAGES["astronaut"]).numpy()
    got = ImageTransform(224, {**full, "interpolation": "bilinear"})(IMAGES["astronaut"])
    assert np.abs(got - want).max() > 100 * TOLERANCE


def test_batch_of_arrays() -> None:
    arrays = [data.astronaut(), data.coffee()]
    got = ImageTransform(32, {"mean": MEAN, "std": STD}).batch(arrays)
    ref = preprocess_for({"mean": MEAN, "std": STD}, 32)
    want = np.stack([ref(Image.fromarray(a)).numpy() for a in arrays])
    assert got.shape == (2, 3, 32, 32) and np.abs(got - want).max() <= TOLERANCE


def test_unsupported_modes_are_refused() -> None:
    with pytest.raises(PreprocessError, match="resize_mode 'longest'"):
        ImageTransform(224, {"resize_mode": "longest"})
    with pytest.raises(PreprocessError, match="interpolation 'nearest'"):
        ImageTransform(224, {"interpolation": "nearest"})
