"""CLIP image/text embeddings and InsightFace face detection + embeddings.

Everything here imports the ML stack inside functions, so the lite bundle (stdlib only)
can import this module and ask what is missing.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photo_search.errors import ModelRuntimeError, ModelsError, Unavailable, UsageError
from photo_search.models import ModelEntry

CLIP_MODULES = ("numpy", "PIL", "torch", "open_clip")
FACE_MODULES = ("numpy", "PIL", "onnxruntime", "insightface")
INDEX_MODULES = ("numpy", "faiss")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DET_SIZE = (640, 640)

_IMPORT_ERRORS: dict[str, str | None] = {}


def import_errors(modules: tuple[str, ...]) -> dict[str, str]:
    """``{module: why it cannot be imported}`` for those of ``modules`` that cannot (cached)."""
    for name in modules:
        if name not in _IMPORT_ERRORS:
            try:
                importlib.import_module(name)
                _IMPORT_ERRORS[name] = None
            except Exception as exc:  # a broken install raises OSError/RuntimeError too
                _IMPORT_ERRORS[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return {n: e for n in modules if (e := _IMPORT_ERRORS[n]) is not None}


def require(modules: tuple[str, ...], feature: str) -> None:
    errors = import_errors(modules)
    if errors:
        first = next(iter(errors.values()))
        raise Unavailable(f"{feature} unavailable: cannot import {', '.join(errors)} ({first})")


def device() -> str:
    """The torch device from ``platforms.device``; ``cpu`` where that layer is not bundled."""
    try:
        from mlfreeze_runtime.device import get_device
    except ImportError:
        return "cpu"
    try:
        return get_device()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def onnx_providers() -> list[str]:
    try:
        from mlfreeze_runtime.device import get_onnx_providers
    except ImportError:
        return ["CPUExecutionProvider"]
    try:
        return list(get_onnx_providers())
    except ValueError as exc:  # ONNX_PROVIDERS names a provider onnxruntime does not offer here
        raise UsageError(str(exc)) from None


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden entries skipped), sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(dirpath, name).resolve())
    return sorted(found)


_PREPROCESS_KWARGS = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation",
                      "resize_mode": "image_resize_mode"}


def clip_config(entry: ModelEntry) -> dict[str, Any] | None:
    """The entry's open_clip config as ``{"model_cfg", "preprocess_cfg"}``, or None.

    From ``config`` when models.json names one, else from the first JSON among ``files`` that
    is a config. Both layouts are accepted: open_clip's hub layout (``{"model_cfg": ...,
    "preprocess_cfg": ...}``) and a plain model config (``embed_dim``, ``vision_cfg``, ``text_cfg``).
    """
    explicit = entry.config is not None
    candidates = [entry.config] if entry.config else sorted(r for r in set(entry.files.values()) if r.endswith(".json"))
    for rel in candidates:
        assert rel is not None
        try:
            raw = json.loads(entry.path(rel).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            if explicit:
                raise ModelsError(f"model {entry.id!r}: config {rel} is unreadable ({exc})") from None
            continue
        if isinstance(raw, dict) and isinstance(raw.get("model_cfg"), dict):
            return {"model_cfg": raw["model_cfg"], "preprocess_cfg": dict(raw.get("preprocess_cfg") or {})}
        if isinstance(raw, dict) and all(k in raw for k in ("embed_dim", "vision_cfg", "text_cfg")):
            return {"model_cfg": {k: v for k, v in raw.items() if k != "preprocess_cfg"},
                    "preprocess_cfg": dict(raw.get("preprocess_cfg") or {})}
        if explicit:
            raise ModelsError(f"model {entry.id!r}: config {rel} is not an open_clip model config "
                              "(model_cfg, or embed_dim + vision_cfg + text_cfg)")
    return None


def _register_config(arch: str, model_cfg: dict[str, Any]) -> None:
    """Make a custom architecture known to open_clip as ``arch`` (it names configs by file stem)."""
    import open_clip

    with tempfile.TemporaryDirectory(prefix="photo-search-cfg-") as tmp:
        path = Path(tmp) / f"{arch}.json"
        path.write_text(json.dumps(model_cfg), encoding="utf-8")
        open_clip.add_model_config(path)  # read now; the registry keeps the entry after the file goes


class ClipEmbedder:
    """An open_clip model loaded from a local weights file only (never a hub)."""

    def __init__(self, entry: ModelEntry, device_name: str | None = None) -> None:
        require(CLIP_MODULES, "CLIP search")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import open_clip
        import torch

        if not entry.arch or ":" in entry.arch:
            raise ModelsError(f"model {entry.id!r}: arch {entry.arch!r} must be a plain open_clip model name")
        config = clip_config(entry)
        pre_kwargs: dict[str, Any] = {}
        if config is not None:
            _register_config(entry.arch, config["model_cfg"])
            pre_kwargs = {_PREPROCESS_KWARGS[k]: tuple(v) if isinstance(v, list) else v
                          for k, v in config["preprocess_cfg"].items() if k in _PREPROCESS_KWARGS}
        if entry.arch not in open_clip.list_models():
            raise ModelsError(f"model {entry.id!r}: open_clip has no architecture {entry.arch!r} and models.json "
                              "gives no config for it")
        weights = entry.weights_path()
        self.entry = entry
        self.device = device_name or device()
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                entry.arch, pretrained=str(weights), device=self.device, **pre_kwargs)
            self.tokenizer = open_clip.get_tokenizer(entry.arch)
        except Exception as exc:
            raise ModelRuntimeError(f"cannot load CLIP model {entry.id!r} ({entry.arch}) from {weights}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        self.model = model.eval()
        self.preprocess = preprocess
        self._torch = torch

    def _normalise(self, feats: Any) -> Any:
        feats = feats.float()
        feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        out = feats.cpu().numpy().astype("float32")
        if out.shape[1] != self.entry.embed_dim:
            raise ModelsError(f"model {self.entry.id!r} gives {out.shape[1]}-d embeddings; models.json says "
                              f"embed_dim {self.entry.embed_dim}")
        return out

    def embed_images(self, paths: list[Path], batch: int = 16) -> tuple[Any, list[int], list[str]]:
        """Return ``(vectors [n_ok, d], indices of paths embedded, one warning per unreadable image)``."""
        import numpy as np
        from PIL import Image

        torch = self._torch
        vectors, ok, skipped = [], [], []
        for start in range(0, len(paths), batch):
            tensors = []
            for i in range(start, min(start + batch, len(paths))):
                try:
                    with Image.open(paths[i]) as im:
                        tensors.append(self.preprocess(im.convert("RGB")))
                    ok.append(i)
                except Exception as exc:
                    skipped.append(f"skipped {paths[i]}: {type(exc).__name__}: {exc}")
            if tensors:
                with torch.no_grad():
                    feats = self.model.encode_image(torch.stack(tensors).to(self.device))
                vectors.append(self._normalise(feats))
        dim = self.entry.embed_dim
        return (np.concatenate(vectors) if vectors else np.zeros((0, dim), "float32")), ok, skipped

    def embed_text(self, text: str) -> Any:
        torch = self._torch
        with torch.no_grad():
            feats = self.model.encode_text(self.tokenizer([text]).to(self.device))
        return self._normalise(feats)


@dataclass(frozen=True, kw_only=True)
class Face:
    bbox: tuple[float, float, float, float]
    score: float
    embedding: Any = None  # unit-norm float32 vector, or None without a recognition model


def _face_analysis(folder: Path, providers: list[str]) -> Any:
    """insightface's FaceAnalysis over the ONNX files in ``folder``, never downloading.

    FaceAnalysis resolves its model folder as ``name`` when that is an existing directory
    (insightface 2.1), else ``<root>/models/<name>`` (downloading when that is missing).
    An absolute ``name`` satisfies both: ``os.path.join(root, "models", "/abs")`` is ``/abs``.
    """
    from insightface.app import FaceAnalysis

    return FaceAnalysis(name=str(folder.resolve()), root=str(folder.resolve().parent),
                        allowed_modules=["detection", "recognition"], providers=providers)


def read_bgr(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])


class FaceEmbedder:
    def __init__(self, entry: ModelEntry) -> None:
        require(FACE_MODULES, "face features")
        # insightface calls scikit-image APIs that warn about their own deprecation: not for users
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface\.")
        self.entry = entry
        folder = entry.onnx_dir()
        providers = onnx_providers()
        try:
            self.app = _face_analysis(folder, providers)
            self.app.prepare(ctx_id=-1 if providers[:1] == ["CPUExecutionProvider"] else 0, det_size=DET_SIZE)
        except AssertionError:
            raise ModelsError(f"model {entry.id!r}: no face detection model among the ONNX files in {folder}") from None
        except Exception as exc:
            why = (str(exc).splitlines() or [""])[0]
            raise ModelRuntimeError(
                f"cannot load face model {entry.id!r} from {folder}: {type(exc).__name__}: {why}") from None

    def detect(self, path: Path) -> list[Face]:
        img = read_bgr(path)
        faces = []
        for f in self.app.get(img):
            emb = f.normed_embedding
            if emb is not None and emb.shape[-1] != self.entry.embed_dim:
                raise ModelsError(f"model {self.entry.id!r} gives {emb.shape[-1]}-d face embeddings; models.json says "
                                  f"embed_dim {self.entry.embed_dim}")
            faces.append(Face(bbox=tuple(round(float(v), 1) for v in f.bbox[:4]),  # type: ignore[arg-type]
                              score=round(float(f.det_score), 4),
                              embedding=None if emb is None else emb.astype("float32")))
        return faces


def group_faces(embeddings: list[Any], threshold: float) -> list[int]:
    """Greedy grouping: each face joins the most similar group (cosine to the group's mean)
    when that similarity is >= ``threshold``, else starts a new group. Returns a group number
    (from 1) per face; faces without an embedding get 0."""
    import numpy as np

    centroids: list[Any] = []
    sums: list[Any] = []
    labels = []
    for emb in embeddings:
        if emb is None:
            labels.append(0)
            continue
        best, best_sim = -1, -2.0
        for g, c in enumerate(centroids):
            sim = float(np.dot(emb, c))
            if sim > best_sim:
                best, best_sim = g, sim
        if best >= 0 and best_sim >= threshold:
            sums[best] = sums[best] + emb
            centroids[best] = sums[best] / max(float(np.linalg.norm(sums[best])), 1e-12)
            labels.append(best + 1)
        else:
            sums.append(emb.copy())
            centroids.append(emb / max(float(np.linalg.norm(emb)), 1e-12))
            labels.append(len(centroids))
    return labels
