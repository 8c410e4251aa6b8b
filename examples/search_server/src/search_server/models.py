"""Model loading, in one place: CLIP and the face model of the bundle's model set.

Loaded through mlfreeze_runtime for now: the models folder is ``$MLFREEZE_MODELS_DIR`` (a frozen
bundle's runtime hook points it at the bundle's ``models/``), ``models.json`` says which files are
which, and the loaders are the ones the build's gate verified. Nothing else in the app touches a
model file, so switching to by-name loads (open_clip's ``create_model_and_transforms`` with a
model name, insightface's ``FaceAnalysis`` with ``name="buffalo_l"``) changes only this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ModelsUnavailable(RuntimeError):
    """This build or machine cannot run the models (the lite bundle; no models folder); one line."""


@dataclass(frozen=True)
class Models:
    clip: Any  # embed_texts(list[str]) / embed_images(list[RGB array]) -> (N, D) float32, unit rows
    faces: Any | None  # detect(BGR array) -> [Face(bbox, score, embedding)]; None without a face model
    clip_id: str
    faces_id: str | None


def load(workdir: Path) -> Models:
    """CLIP (required) and faces (when the set has a face model) on this machine's best device.
    ``workdir``: where the face loader may link its files. ModelsUnavailable with the reason."""
    try:
        from mlfreeze_runtime import clip, faces
        from mlfreeze_runtime.device import get_device, get_onnx_providers
        from mlfreeze_runtime.modelindex import ModelIndexError, find_models_dir, read_models_index
    except ImportError as exc:  # pragma: no cover - mlfreeze_runtime ships in every bundle
        raise ModelsUnavailable(f"mlfreeze_runtime cannot be imported ({exc})") from None
    if not clip.torch_clip_available():
        try:
            import onnxruntime  # noqa: F401  (a slim bundle: CLIP runs as ONNX)
        except ImportError:
            raise ModelsUnavailable("this build has no ML stack (the lite bundle)") from None
    directory, _ = find_models_dir()
    if directory is None:
        raise ModelsUnavailable("no models: set MLFREEZE_MODELS_DIR to a folder holding models.json")
    try:
        index = read_models_index(directory)
    except ModelIndexError as exc:
        raise ModelsUnavailable(str(exc)) from None
    clip_entry, face_entry = index.first("clip"), index.first("insightface")
    if clip_entry is None:
        raise ModelsUnavailable(f"{directory / 'models.json'} lists no CLIP model")
    try:
        embedder = clip.embedder_for(clip_entry, device=get_device(), providers=get_onnx_providers())
        face_embedder = None
        if face_entry is not None:
            workdir.mkdir(parents=True, exist_ok=True)
            face_embedder = faces.load_entry(face_entry, providers=get_onnx_providers(), workdir=workdir)
    except (clip.ClipLoadError, faces.FaceLoadError, ValueError, OSError) as exc:
        raise ModelsUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    return Models(clip=embedder, faces=face_embedder, clip_id=clip_entry.id,
                  faces_id=face_entry.id if face_entry is not None else None)


def read_rgb(data: Any) -> Any:
    """An uploaded image as RGB uint8 (H, W, 3), decoded as the gate decodes its probes."""
    from mlfreeze_runtime.clip import read_rgb as _read_rgb

    return _read_rgb(data)


def read_bgr(data: Any) -> Any:
    """An uploaded image as BGR uint8 (H, W, 3), the layout the face model takes."""
    from mlfreeze_runtime.faces import read_bgr as _read_bgr

    return _read_bgr(data)
