"""OpenCLIP: strict local loading and the embedder the checks drive.

Loading never touches a hub: the architecture comes from open_clip's built-in configs (the
default model, ``ViT-B-32-quickgelu``) or from a config artifact registered under the model's
``arch`` name with ``open_clip.add_model_config``; the weights come from the local file and
are loaded with ``strict=True`` by us, so "no pretrained weights loaded" cannot happen
silently, and a QuickGELU setting that differs from the declared one is an error.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKENIZER_VOCAB = "bpe_simple_vocab_16e6.txt.gz"


class ClipLoadError(RuntimeError):
    """The CLIP model cannot be loaded exactly as declared."""


def read_config(path: Path) -> dict[str, Any]:
    """An open_clip config artifact: ``{"model_cfg": ..., "preprocess_cfg": ...}`` or a bare model cfg."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ClipLoadError(f"config {path}: {exc}") from None
    if "model_cfg" not in data:
        data = {"model_cfg": data, "preprocess_cfg": {}}
    cfg = data["model_cfg"]
    if not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ClipLoadError(f"config {path}: model_cfg lacks embed_dim/vision_cfg/text_cfg")
    return data


def register_config(arch: str, config: Mapping[str, Any]) -> None:
    """Register ``config['model_cfg']`` with open_clip under the name ``arch``."""
    import open_clip

    with tempfile.TemporaryDirectory(prefix="mlfreeze-clipcfg-") as tmp:
        path = Path(tmp) / f"{arch}.json"
        path.write_text(json.dumps(config["model_cfg"]))
        open_clip.add_model_config(path)
        # the registry read the file; drop the path so a later rescan does not miss it
        from open_clip import factory

        if path in factory._MODEL_CONFIG_PATHS:
            factory._MODEL_CONFIG_PATHS.remove(path)


def build_architecture(arch: str, config: Mapping[str, Any] | None = None) -> Any:
    """A randomly initialised model of ``arch`` (registering ``config`` first when given)."""
    import open_clip

    if config is not None:
        register_config(arch, config)
    if open_clip.get_model_config(arch) is None:
        raise ClipLoadError(f"open_clip has no architecture {arch!r} (and no config artifact declares it)")
    # open_clip logs "No pretrained weights loaded" here: expected, the weights come next, strictly
    logging.disable(logging.WARNING)
    try:
        return open_clip.create_model(arch, pretrained=None, load_weights=False, device="cpu")
    finally:
        logging.disable(logging.NOTSET)


def preprocess_for(preprocess_cfg: Mapping[str, Any], image_size: int) -> Any:
    """open_clip's inference transform for a preprocess config."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    keys = {"mean", "std", "interpolation", "resize_mode", "fill_color"}
    cfg = PreprocessCfg(size=image_size, **{k: (tuple(v) if isinstance(v, list) else v)
                                             for k, v in preprocess_cfg.items() if k in keys})
    return image_transform_v2(cfg, is_train=False)


def tokenizer_vocab_path() -> Path:
    import open_clip.tokenizer

    return Path(open_clip.tokenizer.default_bpe())


@dataclass(frozen=True, kw_only=True)
class LoadedClip:
    model: Any
    preprocess: Any
    tokenizer: Any
    arch: str
    quick_gelu: bool
    preprocess_cfg: dict[str, Any]
    image_size: int


def load_clip(*, arch: str, weights: Path, config: Path | None, declared_quick_gelu: bool) -> LoadedClip:
    """Load exactly the declared model from local files, or raise :class:`ClipLoadError`.

    The preprocessing is the architecture's own (open_clip's config, or the config artifact's
    ``preprocess_cfg``): the gate then compares it with the manifest's declared mean and std.
    """
    try:
        import open_clip  # its tokenizer module reads the BPE vocabulary at import time
    except FileNotFoundError as exc:
        if exc.filename and Path(exc.filename).name == TOKENIZER_VOCAB:
            raise ClipLoadError(f"open_clip tokenizer vocabulary {TOKENIZER_VOCAB} is missing "
                                f"(expected at {exc.filename})") from None
        raise ClipLoadError(f"open_clip cannot be imported: {exc}") from None
    except ImportError as exc:
        raise ClipLoadError(f"open_clip cannot be imported: {exc}") from None
    import torch

    if not Path(weights).is_file():
        raise ClipLoadError(f"weights file {weights} is missing")
    vocab = tokenizer_vocab_path()
    if not vocab.is_file():
        raise ClipLoadError(f"open_clip tokenizer vocabulary {TOKENIZER_VOCAB} is missing (expected at {vocab})")
    data = read_config(config) if config is not None else None
    model = build_architecture(arch, data)
    model_cfg = open_clip.get_model_config(arch) or {}
    quick_gelu = bool(model_cfg.get("quick_gelu", False))
    if quick_gelu != declared_quick_gelu:
        raise ClipLoadError(f"QuickGELU mismatch: architecture {arch!r} has quick_gelu={quick_gelu}, "
                            f"the manifest declares quick_gelu={declared_quick_gelu}")
    try:
        open_clip.load_checkpoint(model, str(weights), strict=True)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClipLoadError(f"weights {Path(weights).name} do not fit {arch!r} (strict load): {first}") from None
    model.eval()
    image_size = model_cfg["vision_cfg"].get("image_size", 224)
    pp = dict(open_clip.get_model_preprocess_cfg(model))
    pp.update((data or {}).get("preprocess_cfg", {}))  # a config artifact's own preprocessing wins
    torch.set_grad_enabled(False)
    return LoadedClip(model=model, preprocess=preprocess_for(pp, int(image_size)),
                      tokenizer=open_clip.get_tokenizer(arch), arch=arch, quick_gelu=quick_gelu,
                      preprocess_cfg=pp, image_size=int(image_size))


class ClipEmbedder:
    """Unit-normalised image and text embeddings as float32 numpy arrays, on one device."""

    def __init__(self, loaded: LoadedClip, device: str = "cpu") -> None:
        self.loaded = loaded
        self.device = device
        self.model = loaded.model.to(device)

    def to(self, device: str) -> ClipEmbedder:
        import copy

        return ClipEmbedder(copy.deepcopy(self.loaded), device)

    def images(self, rgb_images: Sequence[Any], *, normalize: bool = True) -> Any:
        import torch
        from PIL import Image

        batch = torch.stack([self.loaded.preprocess(Image.fromarray(im)) for im in rgb_images]).to(self.device)
        with torch.no_grad():
            out = self.model.encode_image(batch)
            if normalize:
                out = torch.nn.functional.normalize(out, dim=-1)
        return out.float().cpu().numpy()

    def texts(self, captions: Sequence[str], *, normalize: bool = True) -> Any:
        import torch

        tokens = self.loaded.tokenizer(list(captions)).to(self.device)
        with torch.no_grad():
            out = self.model.encode_text(tokens)
            if normalize:
                out = torch.nn.functional.normalize(out, dim=-1)
        return out.float().cpu().numpy()
