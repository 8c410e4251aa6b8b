"""Probe inputs: the images and captions every check feeds to a model.

A probe is named by a string that says where it comes from:

- ``skimage:<name>``: a real photo shipped by scikit-image (``astronaut``, ``chelsea``, ...),
- ``insightface:<name>``: an image shipped by insightface (``t1``: a group photo, 6 faces),
- ``synthetic:shape/<colour>/<shape>``: a coloured shape drawn with numpy (the demo CLIP's world),
- ``synthetic:faces/<n>``: ``n`` bright face-like colour tiles for the demo face detector,
- ``synthetic:blank``: a flat grey image (no face, no object).

Synthetic probes are drawn with integer numpy arithmetic only, so they are the same bytes on
every platform. File probes are read from the installed packages at build time and from
``<models>/_probes/`` inside a frozen bundle (see :func:`copy_probe_inputs`), because
scikit-image and insightface's data folders are not part of a bundle.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

PROBES_DIRNAME = "_probes"

# probe name -> (package, path inside the package)
FILE_PROBES: dict[str, tuple[str, str]] = {
    "skimage:astronaut": ("skimage", "data/astronaut.png"),
    "skimage:camera": ("skimage", "data/camera.png"),
    "skimage:chelsea": ("skimage", "data/chelsea.png"),
    "skimage:coffee": ("skimage", "data/coffee.png"),
    "skimage:horse": ("skimage", "data/horse.png"),
    "skimage:motorcycle_right": ("skimage", "data/motorcycle_right.png"),
    "skimage:page": ("skimage", "data/page.png"),
    "skimage:rocket": ("skimage", "data/rocket.jpg"),
    "insightface:t1": ("insightface", "data/images/t1.jpg"),
}

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (40, 60, 225),
    "yellow": (235, 215, 30),
    "purple": (145, 40, 185),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle")


class ProbeError(LookupError):
    """A probe name is unknown or its file is missing."""


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundle_filename(name: str) -> str:
    """``skimage:astronaut`` -> ``skimage_astronaut.png`` (the file's own suffix)."""
    package, rel = FILE_PROBES[name]
    return f"{package}_{Path(rel).name}"


def probe_path(name: str, probes_dir: Path | None = None) -> Path:
    """Where a file probe lives: ``probes_dir`` (a bundle) first, else the installed package."""
    if name not in FILE_PROBES:
        raise ProbeError(f"unknown file probe {name!r}; known: {', '.join(sorted(FILE_PROBES))}")
    if probes_dir is not None:
        path = Path(probes_dir) / bundle_filename(name)
        if path.is_file():
            return path
        raise ProbeError(f"probe {name!r}: {path} is missing (the bundle's models/{PROBES_DIRNAME}/)")
    package, rel = FILE_PROBES[name]
    base = _package_dir(package)
    if base is None or not (base / rel).is_file():
        raise ProbeError(f"probe {name!r}: {package} is not installed or lacks {rel}")
    return base / rel


def render_shape(colour: str, shape: str, *, size: int = 64, cx: float = 0.5, cy: float = 0.5,
                 radius: float = 0.3, background: tuple[int, int, int] = (24, 24, 24)) -> np.ndarray:
    """An RGB uint8 image of one filled shape; positions are fractions of ``size``."""
    import numpy as np

    if colour not in COLOURS or shape not in SHAPES:
        raise ProbeError(f"unknown synthetic shape {colour}/{shape}")
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = background
    yy, xx = np.mgrid[0:size, 0:size]
    # work in integer units of 1/256 pixel so the result is exact everywhere
    x = xx * 256 + 128 - int(round(cx * size * 256))
    y = yy * 256 + 128 - int(round(cy * size * 256))
    r = int(round(radius * size * 256))
    if shape == "circle":
        mask = x * x + y * y <= r * r
    elif shape == "square":
        half = (r * 7) // 8
        mask = (np.abs(x) <= half) & (np.abs(y) <= half)
    else:  # triangle pointing up: inside the three half-planes
        mask = (y <= r * 3 // 4) & (2 * x <= y + r) & (-2 * x <= y + r)
    img[mask] = COLOURS[colour]
    return img


#: The demo faces' colours (RGB): a warm skin tone and a darker band whose channels differ a lot,
#: so a face handed over in the wrong channel order (RGB where BGR is expected) is another face.
FACE_SKIN = (250, 226, 214)
FACE_BAND = (170, 70, 30)


def render_faces(n: int, *, size: int = 640) -> np.ndarray:
    """``n`` bright 128-px colour tiles on a dark field, on a 192-px grid (the demo detector's faces).

    Each tile is skin-coloured (:data:`FACE_SKIN`) with a band (:data:`FACE_BAND`) whose height
    differs per tile, so tiles embed differently; red and blue differ in both colours, so swapping
    the channels moves a face's embedding as far as changing the person does."""
    import numpy as np

    img = np.full((size, size, 3), 16, dtype=np.uint8)
    per_row = size // 192
    for i in range(n):
        row, col = divmod(i, per_row)
        y0, x0 = 32 + row * 192, 32 + col * 192
        img[y0:y0 + 128, x0:x0 + 128] = FACE_SKIN
        band = 16 + 12 * i
        img[y0 + 40:y0 + 40 + band, x0 + 16:x0 + 112] = FACE_BAND
    return img


def load_rgb(name: str, probes_dir: Path | None = None) -> np.ndarray:
    """A probe as an RGB uint8 array (H, W, 3)."""
    import numpy as np

    if name.startswith("synthetic:"):
        what = name.split(":", 1)[1]
        parts = what.split("/")
        if parts[0] == "shape" and len(parts) == 3:
            return render_shape(parts[1], parts[2])
        if parts[0] == "faces" and len(parts) == 2 and parts[1].isdigit():
            return render_faces(int(parts[1]))
        if parts == ["blank"]:
            return np.full((480, 640, 3), 128, dtype=np.uint8)
        raise ProbeError(f"unknown synthetic probe {name!r}")
    from PIL import Image

    with Image.open(probe_path(name, probes_dir)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_bgr(name: str, probes_dir: Path | None = None) -> np.ndarray:
    """A probe as a BGR uint8 array, the layout insightface and OpenCV use."""
    import numpy as np

    return np.ascontiguousarray(load_rgb(name, probes_dir)[:, :, ::-1])


def copy_probe_inputs(dest_dir: Path | str, names: list[str] | None = None) -> list[Path]:
    """Copy the file probes (all of them, or ``names``) into ``dest_dir`` for a bundle.

    The freezer calls this with ``<bundle>/models/_probes``; synthetic probes need no file.
    Returns the written paths.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = sorted(FILE_PROBES) if names is None else sorted(n for n in names if n in FILE_PROBES)
    written = []
    for name in wanted:
        target = dest / bundle_filename(name)
        shutil.copyfile(probe_path(name), target)
        written.append(target)
    return written
