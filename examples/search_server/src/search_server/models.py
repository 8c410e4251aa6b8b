"""Model loading, in one place: CLIP and the face model, loaded by name as the libraries document it.

    open_clip.create_model_and_transforms("ViT-B-32", pretrained="openai")
    open_clip.get_tokenizer("ViT-B-32")
    insightface.app.FaceAnalysis(name="buffalo_l")

In a bundle these names resolve to the bundle's own pinned, verified models with no network
(``mlfreeze_runtime.names``: the bundle's runtime hook installs it; the manifest's models say
which names they answer in ``provides``); :func:`load` installs it for the models folder it finds,
so a run from a checkout with ``$MLFREEZE_MODELS_DIR`` resolves the same names the same way. The
build's gate and the frozen self-test load these names too and compare them with the verified
embeddings. mlfreeze's ``demo`` and ``default`` sets both provide these names.

A slim bundle has no torch: CLIP then runs the model's exported ONNX towers
(``mlfreeze_runtime.clip.embedder_for``). The lite bundle has no ML stack: :func:`load` raises
:class:`ModelsUnavailable` and the server answers 503 on the ML endpoints. Everything ML is
imported inside functions, so the lite bundle imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The names this app loads: a model of the bundle's set must provide them (manifest `provides`).
CLIP_MODEL, CLIP_PRETRAINED = "ViT-B-32", "openai"
FACE_PACK = "buffalo_l"


class ModelsUnavailable(RuntimeError):
    """This build or machine cannot run the models (the lite bundle; no models folder); one line."""


@dataclass(frozen=True)
class Models:
    clip: Any  # embed_texts(list[str]) / embed_images(list[RGB array]) -> (N, D) float32, unit rows
    faces: Any | None  # detect(BGR array) -> [Face(bbox, score, embedding)]; None without a face model
    clip_id: str
    faces_id: str | None


class OpenClip:
    """``open_clip.create_model_and_transforms(CLIP_MODEL, pretrained=CLIP_PRETRAINED)`` on ``device``;
    ``embed_texts(list[str])`` / ``embed_images(list[RGB uint8 (H, W, 3)])`` -> ``(N, D)`` float32,
    L2-normalised rows."""

    def __init__(self, device: str) -> None:
        import open_clip

        model, _, self.preprocess = open_clip.create_model_and_transforms(CLIP_MODEL, pretrained=CLIP_PRETRAINED,
                                                                          device=device)
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(CLIP_MODEL)
        self.device = device
        self.embed_dim = int(model.text_projection.shape[-1])

    def _unit(self, out: Any) -> Any:
        import torch

        return torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy().astype("float32")

    def embed_texts(self, texts: list[str]) -> Any:
        import torch

        with torch.no_grad():
            return self._unit(self.model.encode_text(self.tokenizer(list(texts)).to(self.device)))

    def embed_images(self, images: list[Any]) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        batch = torch.stack([self.preprocess(Image.fromarray(np.asarray(im))) for im in images]).to(self.device)
        with torch.no_grad():
            return self._unit(self.model.encode_image(batch))


def load_faces(verify: dict[str, Any], embed_dim: int, model_id: str) -> Any:
    """``FaceAnalysis(name=FACE_PACK)`` (detection + recognition) on this machine's onnxruntime
    providers, prepared with the detector size and threshold the gate verified (the model's verify
    table in models.json: ``det_size``, ``det_thresh``; 640 x 640 and 0.5 when it names none)."""
    from insightface.app import FaceAnalysis

    from mlfreeze_runtime import faces
    from mlfreeze_runtime.device import get_onnx_session_config

    faces.quiet_insightface()
    providers, options = get_onnx_session_config()
    det_size, det_thresh = faces.detector_params(verify)
    app = FaceAnalysis(name=FACE_PACK, allowed_modules=["detection", "recognition"], providers=providers,
                       provider_options=options)
    app.prepare(ctx_id=faces.ctx_id_for(providers, options), det_size=det_size, det_thresh=det_thresh)
    return faces.FaceEmbedder(app, embed_dim=embed_dim, model_id=model_id)


def load(workdir: Path) -> Models:
    """CLIP (required) and faces (when the set has a face model) on this machine's best device,
    loaded by name (:data:`CLIP_MODEL`, :data:`FACE_PACK`). ``workdir``: where the by-name
    resolution lays out its hub cache. ModelsUnavailable with the reason, one line."""
    try:
        from mlfreeze_runtime import clip, names
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
        workdir.mkdir(parents=True, exist_ok=True)
        # the names below resolve to this folder's models, offline (a bundle's runtime hook did the
        # same for its models/; this covers a run from a checkout with MLFREEZE_MODELS_DIR)
        names.install(models_dir=index.directory, work_dir=workdir / "by-name")
        device = get_device()
        if clip.torch_clip_available():
            embedder: Any = OpenClip(device)
        else:  # slim: no torch; the model's exported towers on onnxruntime
            embedder = clip.embedder_for(clip_entry, device=device, providers=get_onnx_providers())
        if embedder.embed_dim != clip_entry.embed_dim:
            raise ModelsUnavailable(f"CLIP {CLIP_MODEL}/{CLIP_PRETRAINED} gives {embedder.embed_dim}-d embeddings; "
                                    f"models.json says embed_dim {clip_entry.embed_dim} for {clip_entry.id!r}")
        face_embedder = None
        if face_entry is not None:
            face_embedder = load_faces(dict(face_entry.verify), face_entry.embed_dim, face_entry.id)
    except ModelsUnavailable:
        raise
    except Exception as exc:  # a name the set does not provide, a bad file, a bad DEVICE: one line each
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
