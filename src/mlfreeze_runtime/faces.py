"""InsightFace (onnxruntime): the one face loader and embedder of app, gate and self-test.

``load_face_analysis`` is mlfreeze's only ``FaceAnalysis(...)`` call: detection + recognition
from a local folder of ``.onnx`` files (never a download), on the onnxruntime providers and
provider options of :mod:`mlfreeze_runtime.device` (``DEVICE=cuda:N`` reaches the CUDA
provider as ``device_id=N``), with the detector input size and score threshold of the model's
verify table in models.json (``det_size = [w, h]``, ``det_thresh``; defaults
:data:`DEFAULT_DET_SIZE`, :data:`DEFAULT_DET_THRESH`), so app and gate detect alike.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from mlfreeze_runtime.modelindex import ModelEntry

DEFAULT_DET_SIZE = (640, 640)
DEFAULT_DET_THRESH = 0.5
ACCELERATOR_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "CoreMLExecutionProvider",
                         "DmlExecutionProvider", "ROCMExecutionProvider")


class FaceLoadError(RuntimeError):
    """The face models cannot be loaded as declared (one line: what, and what to do)."""


def detector_params(verify: Mapping[str, Any]) -> tuple[tuple[int, int], float]:
    """``(det_size, det_thresh)`` from a model's verify table; ValueError naming the key when malformed."""
    size = verify.get("det_size", list(DEFAULT_DET_SIZE))
    if not (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in size)):
        raise ValueError(f"verify.det_size is {size!r}; expected [width, height] in pixels")
    thresh = verify.get("det_thresh", DEFAULT_DET_THRESH)
    if isinstance(thresh, bool) or not isinstance(thresh, (int, float)) or not 0.0 <= thresh <= 1.0:
        raise ValueError(f"verify.det_thresh is {thresh!r}; expected a number in [0, 1]")
    return (int(size[0]), int(size[1])), float(thresh)


def ctx_id_for(providers: Sequence[str], provider_options: Sequence[Mapping[str, Any]] | None = None) -> int:
    """insightface's ``ctx_id``: -1 (its models then pin the CPU provider) unless an accelerator
    provider leads the list; then that provider's ``device_id`` (0 when unset)."""
    for i, p in enumerate(providers):
        if p in ACCELERATOR_PROVIDERS:
            opts = provider_options[i] if provider_options and i < len(provider_options) else {}
            return int(opts.get("device_id", 0))
    return -1


def assemble_folder(files: Mapping[str, Path], tmp: Path | None = None) -> Path:
    """A folder holding exactly the model's ``.onnx`` files: their own folder when it holds just
    them, else ``tmp`` (default: a new temporary folder removed at exit) filled with links
    (copies where links are refused)."""
    onnx = {Path(name).name: Path(p) for name, p in files.items() if str(name).endswith(".onnx")}
    if not onnx:
        raise FaceLoadError(f"no .onnx files among {sorted(files)}")
    for name, path in onnx.items():
        if not path.is_file():
            raise FaceLoadError(f"model file {name} is missing ({path}): reinstall the bundle, or set "
                                "MLFREEZE_MODELS_DIR to a folder holding the complete model set")
    parents = {p.parent for p in onnx.values()}
    if len(parents) == 1 and all(p.name == n for n, p in onnx.items()):
        folder = next(iter(parents))
        if sorted(q.name for q in folder.glob("*.onnx")) == sorted(onnx):
            return folder
    if tmp is None:
        import atexit
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="mlfreeze-faces-"))
        atexit.register(shutil.rmtree, tmp, True)
    tmp.mkdir(parents=True, exist_ok=True)
    for name, path in onnx.items():
        if (tmp / name).is_symlink() or (tmp / name).exists():  # a folder made before (same name, maybe other file)
            (tmp / name).unlink()
        try:
            os.symlink(path.absolute(), tmp / name)  # a relative target would resolve inside tmp
        except OSError:
            shutil.copyfile(path, tmp / name)
    return tmp


def quiet_insightface() -> None:
    """Silence the deprecation warnings insightface's own calls into scikit-image raise
    (``SimilarityTransform.estimate`` FutureWarning): not actionable for a user."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface(\.|$)")
    warnings.filterwarnings("ignore", category=FutureWarning, message=r".*estimate.*")


def load_face_analysis(folder: Path, *, providers: Sequence[str],
                       provider_options: Sequence[Mapping[str, Any]] | None = None,
                       det_size: tuple[int, int] = DEFAULT_DET_SIZE,
                       det_thresh: float = DEFAULT_DET_THRESH) -> Any:
    """insightface ``FaceAnalysis`` (detection + recognition) over the ``.onnx`` files in ``folder``.

    ``provider_options`` default: :func:`mlfreeze_runtime.device.onnx_provider_options` for this
    process's device, so ``DEVICE=cuda:N`` runs the sessions on GPU N.

    FaceAnalysis resolves ``name`` as a folder when it is an existing directory and
    ``<root>/models/<name>`` otherwise; an absolute ``name`` is the folder itself either way,
    so nothing is downloaded. Raises :class:`FaceLoadError` when either model is missing.
    """
    quiet_insightface()
    import onnxruntime
    from insightface.app import FaceAnalysis

    folder = Path(folder).resolve()
    if provider_options is None:  # the device this process runs on (DEVICE=cuda:N -> device_id N)
        provider_options = _options_for_this_device(providers)
    kwargs: dict[str, Any] = {"providers": list(providers)}
    if provider_options is not None:
        kwargs["provider_options"] = [dict(o) for o in provider_options]
    try:
        app = FaceAnalysis(name=str(folder), root=str(folder.parent), allowed_modules=["detection", "recognition"],
                           **kwargs)
    except AssertionError:
        raise FaceLoadError(f"no face detection model among the .onnx files in {folder}") from None
    missing = [t for t in ("detection", "recognition") if t not in app.models]
    if missing:
        raise FaceLoadError(f"FaceAnalysis found no {' and no '.join(missing)} model in {folder}")
    app.prepare(ctx_id=ctx_id_for(providers, provider_options), det_size=tuple(det_size), det_thresh=det_thresh)
    onnxruntime.set_default_logger_severity(3)
    return app


def _options_for_this_device(providers: Sequence[str]) -> list[dict[str, str]] | None:
    from mlfreeze_runtime.device import get_device, onnx_provider_options

    try:
        return onnx_provider_options(providers, get_device())
    except ValueError:  # a bad DEVICE is reported by whoever chose the providers
        return None


def read_bgr(path: Path | str) -> Any:
    """An image file as a BGR uint8 array (H, W, 3), the layout insightface and OpenCV use."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8)[:, :, ::-1])


@dataclass(frozen=True, kw_only=True)
class Face:
    bbox: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    score: float  # detection score in [0, 1]
    embedding: Any = None  # (D,) float32, L2-normalised; None without a recognition result


class FaceEmbedder:
    """Faces of BGR images: detection boxes, scores and L2-normalised float32 embeddings."""

    def __init__(self, app: Any, *, embed_dim: int | None = None, model_id: str = "faces") -> None:
        self.app = app
        self.embed_dim = embed_dim
        self.model_id = model_id

    def detect(self, bgr: Any) -> list[Face]:
        import numpy as np

        faces = []
        for f in self.app.get(bgr):
            emb = f.normed_embedding
            if emb is not None:
                emb = np.asarray(emb, dtype=np.float32)
                if self.embed_dim is not None and emb.shape[-1] != self.embed_dim:
                    raise FaceLoadError(f"model {self.model_id!r} gives {emb.shape[-1]}-d face embeddings; "
                                        f"models.json says embed_dim {self.embed_dim}")
            faces.append(Face(bbox=tuple(float(v) for v in f.bbox[:4]),  # type: ignore[arg-type]
                              score=float(f.det_score), embedding=emb))
        return faces

    def embed_faces(self, images: Sequence[Any]) -> list[Any]:
        """Per BGR image, the embedding of its highest-scoring face (``None`` when none is found)."""
        out = []
        for img in images:
            found = [f for f in self.detect(img) if f.embedding is not None]
            out.append(max(found, key=lambda f: f.score).embedding if found else None)
        return out

    def session_providers(self) -> dict[str, list[str]]:
        return {task: list(m.session.get_providers()) for task, m in self.app.models.items()}


def load_entry(entry: ModelEntry, *, providers: Sequence[str] | None = None,
               provider_options: Sequence[Mapping[str, Any]] | None = None,
               workdir: Path | None = None) -> FaceEmbedder:
    """A :class:`FaceEmbedder` for a ``kind = "insightface"`` model of a models.json index.

    Providers default to :func:`mlfreeze_runtime.device.get_onnx_session_config` (a bad
    ``DEVICE``/``ONNX_PROVIDERS`` is a ValueError); detector size and threshold come from the
    entry's verify table. ``workdir`` holds links when the model's files do not sit alone in one
    folder.
    """
    if providers is None:
        from mlfreeze_runtime.device import get_onnx_session_config

        providers, provider_options = get_onnx_session_config()
    try:
        det_size, det_thresh = detector_params(entry.verify)
    except ValueError as exc:
        raise FaceLoadError(f"model {entry.id!r}: {exc}") from None
    files = {Path(p).name: p for p in entry.onnx_files()} or entry.file_paths()
    missing = entry.missing_files()
    if missing:
        raise FaceLoadError(f"model {entry.id!r}: file {', '.join(missing)} is missing from {entry.root}: reinstall "
                            "the bundle, or set MLFREEZE_MODELS_DIR to a folder holding the complete model set")
    folder = assemble_folder(files, workdir)
    app = load_face_analysis(folder, providers=providers, provider_options=provider_options,
                             det_size=det_size, det_thresh=det_thresh)
    return FaceEmbedder(app, embed_dim=entry.embed_dim, model_id=entry.id)
