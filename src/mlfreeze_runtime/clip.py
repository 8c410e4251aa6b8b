"""OpenCLIP (torch): strict local loading, the preprocessing, and the one embedder.

The app, the build-time gate and ``<app>-selftest`` all load CLIP here, so the model and the
transform that passed verification are the ones that ship.

Loading never touches a hub: the architecture comes from open_clip's built-in configs (the
default model, ``ViT-B-32-quickgelu``) or from a config artifact registered under the model's
``arch`` name with ``open_clip.add_model_config``; the weights come from the local file and
are loaded with ``strict=True`` by us, so "no pretrained weights loaded" cannot happen
silently, and a QuickGELU setting that differs from the declared one is an error.

Every input a config can pull in is pinned or refused: the tokenizer is open_clip's
``SimpleTokenizer`` over its packaged vocabulary, whose sha256 must be :data:`VOCAB_SHA256`, or
a Hugging Face tokenizer (SigLIP, multilingual) built from the model's pinned tokenizer files
(role ``tokenizer``); a config naming a hub tokenizer without them, a vocabulary file of its own
(``text_cfg.tokenizer_kwargs.bpe_path``) or a ``local-dir:`` architecture is refused. An
``hf-hub:<org>/<repo>`` architecture is built from its pinned config artifact under a local name
(:func:`local_arch`): open_clip is never called with the hub name, so nothing is requested.
The preprocessing is the architecture's own (open_clip's preprocess config, overridden by the
config artifact's ``preprocess_cfg``): mean, std, interpolation, resize mode (and its
crop) and fill colour, each validated so that a value open_clip does not support is one
:class:`ClipLoadError` line, not an empty ``AssertionError``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlfreeze_runtime.tokenizer import VOCAB_FILE as TOKENIZER_VOCAB
from mlfreeze_runtime.tokenizer import VOCAB_SHA256  # open_clip's packaged vocabulary, pinned by sha256

if TYPE_CHECKING:  # pragma: no cover
    from mlfreeze_runtime.modelindex import ModelEntry

INTERPOLATIONS = ("bicubic", "bilinear")
RESIZE_MODES = ("shortest", "longest", "squash")
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode", "fill_color")


class ClipLoadError(RuntimeError):
    """The CLIP model cannot be loaded exactly as declared (one line: what, and what to do)."""


def read_config(path: Path) -> dict[str, Any]:
    """An open_clip config artifact as ``{"model_cfg": ..., "preprocess_cfg": ...}``.

    Accepts open_clip's hub layout (``model_cfg`` + ``preprocess_cfg``) and a bare model config
    (``embed_dim``, ``vision_cfg``, ``text_cfg``, optionally ``preprocess_cfg``).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClipLoadError(f"config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ClipLoadError(f"config {path}: not a JSON object")
    if "model_cfg" not in data:
        data = {"model_cfg": {k: v for k, v in data.items() if k != "preprocess_cfg"},
                "preprocess_cfg": dict(data.get("preprocess_cfg") or {})}
    cfg = data["model_cfg"]
    if not isinstance(cfg, dict) or not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ClipLoadError(f"config {path}: model_cfg lacks embed_dim/vision_cfg/text_cfg")
    data.setdefault("preprocess_cfg", {})
    return data


HUB_PREFIX = "hf-hub:"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # forced, never defaulted


def local_arch(arch: str) -> str:
    """The name open_clip registers an architecture under: ``arch`` itself, or for
    ``hf-hub:org/repo`` the local ``hf-hub--org--repo`` (open_clip is never handed the hub name)."""
    if arch.startswith(HUB_PREFIX):
        return "hf-hub--" + arch[len(HUB_PREFIX):].replace("/", "--")
    return arch


def refuse_unpinned_inputs(arch: str, model_cfg: Mapping[str, Any], *, tokenizer_files: bool = False) -> None:
    """Raise :class:`ClipLoadError` when a config would make open_clip read or fetch an input that
    no manifest pins: a hub tokenizer whose files are not pinned (``tokenizer_files``), a
    vocabulary file of its own, a local-dir model."""
    if arch.startswith("local-dir:") or (":" in arch and not arch.startswith(HUB_PREFIX)):
        raise ClipLoadError(f"arch {arch!r} names a local folder; use an open_clip architecture name or "
                            "hf-hub:<org>/<repo> (and ship its config as an artifact)")
    text = model_cfg.get("text_cfg") or {}
    if "hf_tokenizer_name" in text and not tokenizer_files:
        raise ClipLoadError(f"arch {arch!r}: text_cfg.hf_tokenizer_name={text['hf_tokenizer_name']!r} would load a "
                            "tokenizer from the Hugging Face hub at run time, which nothing pins: add its tokenizer "
                            "files to the manifest as artifacts with role = \"tokenizer\"")
    kwargs = text.get("tokenizer_kwargs") or {}
    if "bpe_path" in kwargs:
        raise ClipLoadError(f"arch {arch!r}: text_cfg.tokenizer_kwargs.bpe_path={kwargs['bpe_path']!r} names a "
                            "vocabulary file that nothing pins; remove it to use open_clip's packaged vocabulary")
    if ("siglip" in arch.lower() or text.get("tokenizer_mode")) and not tokenizer_files:
        raise ClipLoadError(f"arch {arch!r} uses a hub tokenizer whose files are not pinned: add them to the "
                            "manifest as artifacts with role = \"tokenizer\"")


def register_config(arch: str, config: Mapping[str, Any]) -> None:
    """Register ``config['model_cfg']`` with open_clip under the name ``arch``."""
    import open_clip

    with tempfile.TemporaryDirectory(prefix="mlfreeze-clipcfg-") as tmp:
        path = Path(tmp) / f"{arch}.json"
        path.write_text(json.dumps(config["model_cfg"]), encoding="utf-8")
        open_clip.add_model_config(path)
        # the registry read the file; drop the path so a later rescan does not miss it
        from open_clip import factory

        if path in factory._MODEL_CONFIG_PATHS:
            factory._MODEL_CONFIG_PATHS.remove(path)


def build_architecture(arch: str, config: Mapping[str, Any] | None = None) -> Any:
    """A randomly initialised model of ``arch`` (registering ``config`` first when given).

    The only ``open_clip.create_model`` call of mlfreeze's runtime.
    """
    import open_clip

    if arch.startswith(HUB_PREFIX) or ":" in arch:  # never a hub name into open_clip (it would fetch)
        if config is None:
            raise ClipLoadError(f"arch {arch!r} has no config artifact: its config would come from the hub, "
                                "which nothing pins; add its open_clip_config.json as an artifact with role = config")
        arch = local_arch(arch)
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


def check_preprocess_cfg(cfg: Mapping[str, Any], *, where: str = "preprocess_cfg") -> dict[str, Any]:
    """The inference-relevant keys of a preprocess config, validated (one :class:`ClipLoadError` line)."""
    out = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k in PREPROCESS_KEYS}
    for key in ("mean", "std"):
        v = out.get(key)
        if v is not None and not (isinstance(v, tuple) and len(v) == 3
                                  and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
            raise ClipLoadError(f"{where}.{key} is {cfg[key]!r}; expected 3 numbers")
    if any(float(x) <= 0 for x in out.get("std", (1.0,))):
        raise ClipLoadError(f"{where}.std is {cfg['std']!r}; every value must be > 0")
    interp = out.get("interpolation", "bicubic")
    if interp not in INTERPOLATIONS:
        raise ClipLoadError(f"{where}.interpolation is {interp!r}; supported: {', '.join(INTERPOLATIONS)}")
    mode = out.get("resize_mode", "shortest")
    if mode not in RESIZE_MODES:
        raise ClipLoadError(f"{where}.resize_mode is {mode!r}; supported: {', '.join(RESIZE_MODES)}")
    fill = out.get("fill_color", 0)
    if isinstance(fill, bool) or not isinstance(fill, int) or not 0 <= fill <= 255:
        raise ClipLoadError(f"{where}.fill_color is {fill!r}; expected an integer 0-255")
    return out


def preprocess_for(preprocess_cfg: Mapping[str, Any], image_size: int) -> Any:
    """open_clip's full inference transform for a preprocess config: resize (interpolation, resize
    mode), crop or pad (fill colour), to tensor, normalise (mean, std)."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = PreprocessCfg(size=image_size, **check_preprocess_cfg(preprocess_cfg))
    return image_transform_v2(cfg, is_train=False)


def tokenizer_vocab_path() -> Path:
    import open_clip.tokenizer

    return Path(open_clip.tokenizer.default_bpe())


def check_vocab(path: Path) -> None:
    """The vocabulary open_clip will read is the pinned one (:data:`VOCAB_SHA256`)."""
    if not path.is_file():
        raise ClipLoadError(f"open_clip tokenizer vocabulary {TOKENIZER_VOCAB} is missing (expected at {path}): "
                            "reinstall open_clip_torch, or rebuild the bundle (its hook collects the file)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != VOCAB_SHA256:
        raise ClipLoadError(f"open_clip tokenizer vocabulary {path} has sha256 {digest[:16]}..., not the pinned "
                            f"{VOCAB_SHA256[:16]}...: reinstall open_clip_torch")


@dataclass(frozen=True, kw_only=True)
class LoadedClip:
    model: Any
    preprocess: Any
    tokenizer: Any
    arch: str
    quick_gelu: bool
    preprocess_cfg: dict[str, Any]
    image_size: int
    embed_dim: int = 0


def _import_open_clip() -> Any:
    try:
        import open_clip  # its tokenizer module reads the BPE vocabulary at import time
    except FileNotFoundError as exc:
        if exc.filename and Path(exc.filename).name == TOKENIZER_VOCAB:
            raise ClipLoadError(f"open_clip tokenizer vocabulary {TOKENIZER_VOCAB} is missing "
                                f"(expected at {exc.filename}): reinstall open_clip_torch, or rebuild the "
                                "bundle") from None
        raise ClipLoadError(f"open_clip cannot be imported: {exc}") from None
    except ImportError as exc:
        raise ClipLoadError(f"open_clip cannot be imported: {exc}") from None
    return open_clip


def hub_tokenizer(text_cfg: Mapping[str, Any], files: Mapping[str, Path]) -> Any:
    """open_clip's ``HFTokenizer`` over the pinned tokenizer ``files`` (linked into one folder):
    never a hub name. Needs ``transformers``; one :class:`ClipLoadError` line without it."""
    try:
        import transformers  # noqa: F401
        from open_clip.tokenizer import HFTokenizer
    except ImportError as exc:
        raise ClipLoadError(f"this model's tokenizer is a Hugging Face tokenizer and {exc.name or 'transformers'} is "
                            "not installed: add transformers to the project's dependencies") from None
    folder = Path(tempfile.mkdtemp(prefix="mlfreeze-tokenizer-"))
    for name, src in files.items():
        try:
            os.symlink(Path(src).resolve(), folder / Path(name).name)
        except OSError:
            import shutil

            shutil.copyfile(src, folder / Path(name).name)
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    return HFTokenizer(str(folder), context_length=int(text_cfg.get("context_length", 77)),
                       tokenizer_mode=text_cfg.get("tokenizer_mode"), **kwargs)


def load_clip(*, arch: str, weights: Path, config: Path | None, declared_quick_gelu: bool | None,
              tokenizer_files: Mapping[str, Path] | None = None) -> LoadedClip:
    """Load exactly the declared model from local files, or raise :class:`ClipLoadError`.

    ``declared_quick_gelu=None`` skips the QuickGELU comparison (an index without a verify table).
    ``tokenizer_files``: the model's pinned Hugging Face tokenizer files (role ``tokenizer``),
    for architectures whose tokenizer is not open_clip's BPE (SigLIP, multilingual).
    The hub is forced offline (``HF_HUB_OFFLINE=1``) before open_clip is imported.
    """
    os.environ.update(OFFLINE_ENV)
    if arch.startswith(HUB_PREFIX) and config is None:  # before open_clip is asked anything
        raise ClipLoadError(f"arch {arch!r} has no config artifact: its config would come from the hub, which "
                            "nothing pins; add its open_clip_config.json as an artifact with role = config")
    refuse_unpinned_inputs(arch, {}, tokenizer_files=bool(tokenizer_files))
    open_clip = _import_open_clip()
    import torch

    if not Path(weights).is_file():
        raise ClipLoadError(f"weights file {weights} is missing: reinstall the bundle, or set MLFREEZE_MODELS_DIR "
                            "to a folder holding the complete model set")
    check_vocab(tokenizer_vocab_path())
    data = read_config(config) if config is not None else None
    if data is not None:
        refuse_unpinned_inputs(arch, data["model_cfg"], tokenizer_files=bool(tokenizer_files))
    pp_own = check_preprocess_cfg((data or {}).get("preprocess_cfg", {}), where=f"{config}: preprocess_cfg")
    model = build_architecture(arch, data)
    name = local_arch(arch)
    model_cfg = open_clip.get_model_config(name) or {}
    refuse_unpinned_inputs(arch, model_cfg, tokenizer_files=bool(tokenizer_files))
    quick_gelu = bool(model_cfg.get("quick_gelu", False))
    if declared_quick_gelu is not None and quick_gelu != declared_quick_gelu:
        raise ClipLoadError(f"QuickGELU mismatch: architecture {arch!r} has quick_gelu={quick_gelu}, "
                            f"the manifest declares quick_gelu={declared_quick_gelu}")
    try:
        open_clip.load_checkpoint(model, str(weights), strict=True)
    except Exception as exc:  # torch, safetensors and pickle each raise their own kinds for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClipLoadError(f"weights {Path(weights).name} do not fit {arch!r} (strict load): {first}") from None
    model.eval()
    image_size = model_cfg["vision_cfg"].get("image_size", 224)
    if isinstance(image_size, (list, tuple)):
        image_size = image_size[0]
    pp = dict(open_clip.get_model_preprocess_cfg(model))
    pp.update(pp_own)  # a config artifact's own preprocessing wins
    transform = preprocess_for(pp, int(image_size))
    text_cfg = model_cfg.get("text_cfg") or {}
    if tokenizer_files and (text_cfg.get("hf_tokenizer_name") or "siglip" in arch.lower()):
        tokenizer = hub_tokenizer(text_cfg, tokenizer_files)
    else:
        tokenizer = open_clip.get_tokenizer(name)
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    if not isinstance(tokenizer, SimpleTokenizer) and not (tokenizer_files and isinstance(tokenizer, HFTokenizer)):
        raise ClipLoadError(f"arch {arch!r} uses {type(tokenizer).__name__}; only open_clip's packaged BPE "
                            "tokenizer (SimpleTokenizer) is supported")
    torch.set_grad_enabled(False)
    return LoadedClip(model=model, preprocess=transform, tokenizer=tokenizer, arch=arch, quick_gelu=quick_gelu,
                      preprocess_cfg=pp, image_size=int(image_size),
                      embed_dim=int(model_cfg.get("embed_dim", 0)))


def load_entry(entry: ModelEntry) -> LoadedClip:
    """Load a ``kind = "clip"`` model of a models.json index (:mod:`mlfreeze_runtime.modelindex`).

    Weights and config come from the entry's files (roles, else suffixes); the declared QuickGELU
    from its verify table (``quick_gelu``), when it has one.
    """
    from mlfreeze_runtime.modelindex import ModelIndexError

    if not entry.arch:
        raise ClipLoadError(f"model {entry.id!r} names no arch")
    try:
        weights, config = entry.weights_path(), entry.config_path()
    except ModelIndexError as exc:
        raise ClipLoadError(str(exc)) from None
    declared = entry.verify.get("quick_gelu")
    tokenizer = {n: entry.path(entry.files[n]) for n, r in entry.roles.items() if r == "tokenizer" and n in entry.files}
    return load_clip(arch=entry.arch, weights=weights, config=config,
                     declared_quick_gelu=declared if isinstance(declared, bool) else None,
                     tokenizer_files=tokenizer or None)


ONNX_ROLES = ("image_onnx", "text_onnx")


def importable(*modules: str) -> bool:
    """Whether every one of ``modules`` can be imported here, found without importing them (an
    import would also be an edge PyInstaller follows into a bundle)."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):  # a finder that refuses the name, or a half-installed package
        return False


def torch_clip_available() -> bool:
    """Whether torch and open_clip import here (False in a slim bundle, which ships neither)."""
    return importable("torch", "open_clip")


def embedder_for(entry: ModelEntry, *, device: str = "cpu", providers: Sequence[str] | None = None) -> Any:
    """The CLIP embedder of a models.json entry: the torch :class:`ClipEmbedder` when torch and
    open_clip are here, else (the slim flavor) :class:`mlfreeze_runtime.onnx_clip.OnnxClipEmbedder`
    over the ONNX towers the entry lists with roles ``image_onnx`` and ``text_onnx``. Both give
    ``embed_images``/``embed_texts`` -> ``(N, D)`` float32 L2-normalised. Raises
    :class:`ClipLoadError` when neither can be built."""
    if torch_clip_available():
        return ClipEmbedder(load_entry(entry), device)
    towers = {r: entry.path(entry.files[n]) for n, r in entry.roles.items() if r in ONNX_ROLES and n in entry.files}
    if len(towers) != len(ONNX_ROLES):
        raise ClipLoadError(f"model {entry.id!r}: torch/open_clip are not installed and models.json lists no ONNX "
                            "towers (roles image_onnx, text_onnx): run `mlfreeze export` and rebuild the slim bundle")
    from mlfreeze_runtime.onnx_clip import OnnxClipEmbedder, OnnxClipError

    try:
        return OnnxClipEmbedder(towers["image_onnx"], towers["text_onnx"], providers=providers,
                                expected_source=entry.source or None)
    except OnnxClipError as exc:
        raise ClipLoadError(f"model {entry.id!r}: {exc}") from None


def read_rgb(path: Path | str) -> Any:
    """An image file as an RGB uint8 array (H, W, 3) (Pillow decodes; any mode is converted)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


class ClipEmbedder:
    """L2-normalised image and text embeddings as float32 numpy arrays ``(N, D)``, on one device.

    ``embed_images(images)``: RGB uint8 arrays (H, W, 3) or PIL images; ``embed_texts(texts)``:
    strings. ``images``/``texts`` are the same with ``normalize=False`` available (the gate checks
    the raw norm).
    """

    def __init__(self, loaded: LoadedClip, device: str = "cpu") -> None:
        self.loaded = loaded
        self.device = device
        self.model = loaded.model.to(device)

    @property
    def embed_dim(self) -> int:
        return self.loaded.embed_dim

    def to(self, device: str) -> ClipEmbedder:
        return ClipEmbedder(copy.deepcopy(self.loaded), device)

    def _finish(self, out: Any, normalize: bool) -> Any:
        import torch

        out = out.float()
        if normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out.cpu().numpy().astype("float32", copy=False)

    def images(self, rgb_images: Sequence[Any], *, normalize: bool = True) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        if not len(rgb_images):
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        pil = [im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, dtype=np.uint8))
               for im in rgb_images]
        batch = torch.stack([self.loaded.preprocess(im.convert("RGB")) for im in pil]).to(self.device)
        with torch.no_grad():
            return self._finish(self.model.encode_image(batch), normalize)

    def texts(self, captions: Sequence[str], *, normalize: bool = True) -> Any:
        import numpy as np
        import torch

        if not len(captions):
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        tokens = self.loaded.tokenizer(list(captions)).to(self.device)
        with torch.no_grad():
            return self._finish(self.model.encode_text(tokens), normalize)

    def embed_images(self, images: Sequence[Any]) -> Any:
        """``(N, D)`` float32, each row L2-normalised."""
        return self.images(images)

    def embed_texts(self, texts: Sequence[str]) -> Any:
        """``(N, D)`` float32, each row L2-normalised."""
        return self.texts(texts)
