"""CLIP image/text embeddings and InsightFace face detection + embeddings.

The models load by name, as apps in the wild do: ``open_clip.create_model_and_transforms("ViT-B-32",
pretrained="openai")`` with ``open_clip.get_tokenizer("ViT-B-32")``, and
``FaceAnalysis(name="buffalo_l")``. In a bundle (and under the self-test's probe) those names
resolve to the bundle's pinned, verified files with no network (``mlfreeze_runtime.names``; the
manifest's ``provides``), so the gate and ``photo-search-selftest`` verify exactly what these
calls load. A slim bundle has no torch: CLIP then runs the model's exported ONNX towers through
``mlfreeze_runtime.clip.embedder_for``. The device and providers come from
``mlfreeze_runtime.device``. Everything here imports the ML stack inside functions, so the lite
bundle (stdlib only) can import this module and ask what is missing.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photo_search.errors import ModelRuntimeError, ModelsError, Unavailable, UsageError
from photo_search.models import ModelEntry

# The names this app loads (what a model of the bundle's manifest must provide).
CLIP_MODEL, CLIP_PRETRAINED = "ViT-B-32", "openai"
FACE_PACK = "buffalo_l"

TORCH_CLIP_MODULES = ("numpy", "PIL", "torch", "open_clip")
ONNX_CLIP_MODULES = ("numpy", "PIL", "onnxruntime")  # a slim bundle: the exported towers on onnxruntime


def clip_modules() -> tuple[str, ...]:
    """What CLIP search needs here: torch + open_clip when installed (full), else onnxruntime (slim),
    the same choice ``mlfreeze_runtime.clip.embedder_for`` makes (found without importing them)."""
    from mlfreeze_runtime.clip import torch_clip_available

    return TORCH_CLIP_MODULES if torch_clip_available() else ONNX_CLIP_MODULES


CLIP_MODULES = clip_modules()
FACE_MODULES = ("numpy", "PIL", "onnxruntime", "insightface")
INDEX_MODULES = ("numpy", "faiss")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")

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
    """The torch device from ``mlfreeze_runtime.device`` (``DEVICE``, ``FORCE_CPU``, else the best)."""
    from mlfreeze_runtime.device import get_device

    try:
        return get_device()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def onnx_providers() -> list[str]:
    from mlfreeze_runtime.device import get_onnx_providers

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


class OpenClipByName:
    """``open_clip.create_model_and_transforms(CLIP_MODEL, pretrained=CLIP_PRETRAINED)``: the load an
    app makes; ``embed_images``/``embed_texts`` -> ``(N, D)`` float32, unit-norm rows."""

    def __init__(self, device_name: str) -> None:
        import open_clip

        model, _, self.preprocess = open_clip.create_model_and_transforms(CLIP_MODEL, pretrained=CLIP_PRETRAINED,
                                                                          device=device_name)
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(CLIP_MODEL)
        self.device = device_name
        self.embed_dim = int(model.text_projection.shape[-1])

    def _unit(self, out: Any) -> Any:
        import torch

        return torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy().astype("float32")

    def embed_images(self, images: list[Any]) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        batch = torch.stack([self.preprocess(Image.fromarray(np.asarray(im))) for im in images]).to(self.device)
        with torch.no_grad():
            return self._unit(self.model.encode_image(batch))

    def embed_texts(self, texts: list[str]) -> Any:
        import torch

        with torch.no_grad():
            return self._unit(self.model.encode_text(self.tokenizer(list(texts)).to(self.device)))


class ClipEmbedder:
    """CLIP loaded by name (:class:`OpenClipByName`; the bundle resolves the name to its verified
    files), or in a slim bundle the model's ONNX towers through ``mlfreeze_runtime.clip``."""

    def __init__(self, entry: ModelEntry, device_name: str | None = None) -> None:
        require(CLIP_MODULES, "CLIP search")
        from mlfreeze_runtime import clip

        self.entry = entry
        self.device = device_name or device()
        try:
            if clip.torch_clip_available():
                self.embedder: Any = OpenClipByName(self.device)
            else:  # slim: no torch, the entry's exported towers on onnxruntime
                self.embedder = clip.embedder_for(entry, device=self.device, providers=onnx_providers())
        except clip.ClipLoadError as exc:
            raise ModelRuntimeError(f"cannot load CLIP model {entry.id!r} ({entry.arch}): {exc}") from None
        except Exception as exc:  # open_clip's own errors (a bad file), a name the bundle does not provide
            why = (str(exc).splitlines() or [""])[0]
            raise ModelRuntimeError(f"cannot load CLIP model {entry.id!r} as {CLIP_MODEL}/{CLIP_PRETRAINED}: "
                                    f"{type(exc).__name__}: {why}") from None
        if self.embedder.embed_dim != entry.embed_dim:
            raise ModelsError(f"model {entry.id!r} gives {self.embedder.embed_dim}-d embeddings; models.json says "
                              f"embed_dim {entry.embed_dim}")

    def embed_images(self, paths: list[Path], batch: int = 16) -> tuple[Any, list[int], list[str]]:
        """Return ``(vectors [n_ok, d] float32 unit-norm, indices of paths embedded, one warning per
        unreadable image)``."""
        import numpy as np

        from mlfreeze_runtime.clip import read_rgb

        vectors, ok, skipped = [], [], []
        for start in range(0, len(paths), batch):
            images = []
            for i in range(start, min(start + batch, len(paths))):
                try:
                    images.append(read_rgb(paths[i]))
                    ok.append(i)
                except Exception as exc:
                    skipped.append(f"skipped {paths[i]}: {type(exc).__name__}: {exc}")
            if images:
                vectors.append(self.embedder.embed_images(images))
        dim = self.entry.embed_dim
        return (np.concatenate(vectors) if vectors else np.zeros((0, dim), "float32")), ok, skipped

    def embed_texts(self, texts: list[str]) -> Any:
        """``(len(texts), d)`` float32, unit-norm rows."""
        return self.embedder.embed_texts(texts)

    def embed_text(self, text: str) -> Any:
        return self.embed_texts([text])


@dataclass(frozen=True, kw_only=True)
class Face:
    bbox: tuple[float, float, float, float]
    score: float
    embedding: Any = None  # unit-norm float32 vector, or None without a recognition model


class FaceEmbedder:
    """``FaceAnalysis(name=FACE_PACK)`` (detection + recognition), the load an app makes; detector
    size and threshold from models.json, onnxruntime providers and device id from
    ``mlfreeze_runtime.device``."""

    def __init__(self, entry: ModelEntry) -> None:
        require(FACE_MODULES, "face features")
        from mlfreeze_runtime import faces

        faces.quiet_insightface()
        self.entry = entry
        providers = onnx_providers()
        try:
            from insightface.app import FaceAnalysis

            det_size, det_thresh = faces.detector_params(entry.verify)
            try:
                app = FaceAnalysis(name=FACE_PACK, allowed_modules=["detection", "recognition"], providers=providers)
            except AssertionError:  # insightface asserts that the pack holds a detector
                raise faces.FaceLoadError(f"no face detection model among the .onnx files in {FACE_PACK}") from None
            app.prepare(ctx_id=faces.ctx_id_for(providers), det_size=det_size, det_thresh=det_thresh)
            self.embedder = faces.FaceEmbedder(app, embed_dim=entry.embed_dim, model_id=entry.id)
        except (faces.FaceLoadError, ValueError) as exc:
            raise ModelsError(f"model {entry.id!r}: {exc}") from None
        except Exception as exc:
            why = (str(exc).splitlines() or [""])[0]
            raise ModelRuntimeError(
                f"cannot load face model {entry.id!r} from {entry.root}: {type(exc).__name__}: {why}") from None

    def detect(self, path: Path) -> list[Face]:
        from mlfreeze_runtime.faces import FaceLoadError, read_bgr

        try:
            found = self.embedder.detect(read_bgr(path))
        except FaceLoadError as exc:
            raise ModelsError(str(exc)) from None
        return [Face(bbox=tuple(round(v, 1) for v in f.bbox), score=round(f.score, 4),  # type: ignore[arg-type]
                     embedding=f.embedding) for f in found]

    def embed_faces(self, paths: list[Path]) -> list[Any]:
        """Per image, the embedding of its highest-scoring face, or None (the probe contract)."""
        from mlfreeze_runtime.faces import read_bgr

        return self.embedder.embed_faces([read_bgr(p) for p in paths])


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
