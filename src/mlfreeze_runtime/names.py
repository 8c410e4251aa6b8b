"""By-name model loads resolve to the manifest's pinned, verified files: never a download.

Apps load models the way the libraries document it::

    open_clip.create_model_and_transforms("ViT-B-32", pretrained="openai")
    open_clip.create_model_from_pretrained("hf-hub:timm/vit_base_patch32_clip_224.openai")
    open_clip.get_tokenizer("ViT-B-32")
    clip.load("ViT-B/32")                                  # OpenAI's CLIP package
    insightface.app.FaceAnalysis(name="buffalo_l")
    insightface.model_zoo.get_model("buffalo_l/w600k_r50.onnx")

Each manifest model says which such names it provides (``provides`` in the manifest, copied into
models.json)::

    open_clip:<model name>/<pretrained tag>     open_clip:ViT-B-32/openai
    hf-hub:<org>/<repo>                         hf-hub:timm/vit_base_patch32_clip_224.openai
    clip:<OpenAI CLIP name>                     clip:ViT-B/32
    insightface:<model pack>                    insightface:buffalo_l

:func:`install` makes those calls resolve to the model's files in this process. It prefers each
library's own mechanisms:

- **Hugging Face hub** (open_clip's ``hf-hub:`` ids, pretrained tags stored on the hub, hub
  tokenizers): a hub cache laid out from the provided files (``models--<org>--<repo>/refs/main``
  + ``snapshots/<revision>/<file>``, links to the verified files) is ``HF_HUB_CACHE``, and the hub
  is forced offline (``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1``: set, not defaulted, so an
  environment that says otherwise cannot make a request).
- **open_clip**: the provided model name's architecture is registered with
  ``open_clip.add_model_config`` (so ``"ViT-B-32"`` builds the manifest model's architecture,
  e.g. the QuickGELU variant the OpenAI weights need), and a pretrained tag resolves to the
  local weights file through open_clip's own ``{"file": path}`` pretrained config.

What no mechanism reaches is one patch each, installed lazily when the library is imported (an
import hook; nothing is imported at start): open_clip's ``get_pretrained_cfg`` and hub/URL
download functions, OpenAI ``clip.load`` (its downloads are checked against the sha256 of
OpenAI's own file, which a manifest model need not be: the model is built from the manifest's
weights with ``clip.model.CLIP``), and insightface's model-zoo downloads (``ensure_available``,
``download``, ``download_onnx``, ``model_zoo.get_model``; insightface 2.1 reads no environment
variable for its model root, so ``root=`` cannot be redirected without one).

A name no model provides raises :class:`NotProvidedError` before any request: one line naming the
name and the manifest key that would provide it (``models.<id>.provides``).

The bundle's runtime hook (``rthook_models_by_name.py``) calls :func:`install` for every bundle;
the gate and the self-test call it too, and :func:`mlfreeze_runtime.app.handle_probe` does before
it answers a probe. Standard library at import: the lite bundle imports this.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import json
import os
import shutil
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

#: scheme -> the model kind that can provide names of it
SCHEMES: dict[str, str] = {"open_clip": "clip", "hf-hub": "clip", "clip": "clip", "insightface": "insightface"}
#: Environment forced (not defaulted) by :func:`install`: no hub request, whatever the environment says.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1"}
HUB_CACHE_ENV = "HF_HUB_CACHE"
HUB_FILES = {"weights": "open_clip_model.safetensors", "config": "open_clip_config.json"}


class NotProvidedError(RuntimeError):
    """A by-name load that no model of this bundle's manifest provides (one line: the name, and the
    manifest key that would provide it)."""


def parse(name: str) -> tuple[str, str, str]:
    """``"open_clip:ViT-B-32/openai"`` -> ``("open_clip", "ViT-B-32", "openai")``;
    ``"hf-hub:org/repo"`` -> ``("hf-hub", "org/repo", "")``; ``"clip:ViT-B/32"`` ->
    ``("clip", "ViT-B/32", "")``; ``"insightface:buffalo_l"`` -> ``("insightface", "buffalo_l", "")``.

    Raises ValueError (the reason, without the name) for an unknown scheme or a malformed name."""
    scheme, sep, rest = name.partition(":")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"expected <scheme>:<name> with scheme {', '.join(SCHEMES)}")
    if not rest or rest != rest.strip() or any(c in rest for c in "\\\n\t"):
        raise ValueError("the name after the scheme is empty or has spaces or backslashes")
    if scheme == "open_clip":
        model, slash, tag = rest.rpartition("/")
        if not slash or not model or not tag or "/" in model:
            raise ValueError("expected open_clip:<model name>/<pretrained tag>, e.g. open_clip:ViT-B-32/openai")
        return scheme, model, tag
    if scheme == "hf-hub":
        parts = rest.split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError("expected hf-hub:<org>/<repo>")
        return scheme, rest, ""
    if scheme == "insightface" and "/" in rest:
        raise ValueError("expected insightface:<model pack name>, e.g. insightface:buffalo_l")
    return scheme, rest, ""


@dataclass(frozen=True, kw_only=True)
class Model:
    """A model as the resolver needs it (from a models.json entry or a gate ModelRef)."""

    id: str
    kind: str
    arch: str
    files: Mapping[str, Path]  # artifact name -> absolute path
    roles: Mapping[str, str] = field(default_factory=dict)  # artifact name -> role
    verify: Mapping[str, Any] = field(default_factory=dict)
    provides: tuple[str, ...] = ()
    revision: str = ""  # the hub revision of an hf-hub model (else derived from the weights' bytes)

    def role(self, role: str) -> Path | None:
        """The path of the file with ``role`` (weights: also by suffix when no role is recorded)."""
        for name, r in self.roles.items():
            if r == role and name in self.files:
                return Path(self.files[name])
        if role == "weights":
            for name, p in self.files.items():
                weights_like = name.endswith((".safetensors", ".bin", ".pt", ".pth"))
                if weights_like and self.roles.get(name, "weights") == "weights":
                    return Path(p)
        if role == "config":
            for name, p in self.files.items():
                if name.endswith(".json") and name != "golden.json" and not self.roles.get(name):
                    return Path(p)
        return None

    def with_role(self, role: str) -> dict[str, Path]:
        return {n: Path(p) for n, p in self.files.items() if self.roles.get(n) == role}

    def onnx_files(self) -> dict[str, Path]:
        return {Path(n).name: Path(p) for n, p in self.files.items() if str(n).endswith(".onnx")}


def from_entry(entry: Any) -> Model:
    """A :class:`Model` from a :class:`mlfreeze_runtime.modelindex.ModelEntry` (or anything with
    ``id, kind, arch, roles, verify, provides, revision`` and ``file_paths()``)."""
    files = entry.file_paths() if hasattr(entry, "file_paths") else dict(entry.files)
    roles = dict(entry.roles or {})
    if entry.kind == "clip" and hasattr(entry, "config_path"):  # a models.json's own rules for these roles
        with _suppress():
            cfg = entry.config_path()
            if cfg is not None and "config" not in roles.values():
                files[cfg.name], roles[cfg.name] = cfg, "config"
        with _suppress():
            weights = entry.weights_path()
            if "weights" not in roles.values():
                files[weights.name], roles[weights.name] = weights, "weights"
    return Model(id=entry.id, kind=entry.kind, arch=entry.arch or "", files=files, roles=roles,
                 verify=dict(entry.verify or {}), provides=tuple(getattr(entry, "provides", ()) or ()),
                 revision=str(getattr(entry, "revision", "") or ""))


class Resolver:
    """Names -> models, and the one-line refusal for names no model provides."""

    def __init__(self, models: Sequence[Model], *, where: str = "this bundle's models") -> None:
        self.models = list(models)
        self.where = where
        self.names: dict[tuple[str, str, str], Model] = {}
        for m in self.models:
            for name in m.provides:
                try:
                    key = parse(name)
                except ValueError:
                    continue  # the manifest loader refuses these; an old models.json is not a crash
                if key[0] == "open_clip":  # open_clip looks names up with '/' turned into '-'
                    key = (key[0], key[1].replace("/", "-"), key[2])
                self.names.setdefault(key, m)

    def lookup(self, scheme: str, name: str, tag: str = "") -> Model | None:
        if scheme == "open_clip":
            name = name.replace("/", "-")
        return self.names.get((scheme, name, tag))

    def by_scheme(self, scheme: str) -> list[tuple[str, str, Model]]:
        return [(n, t, m) for (s, n, t), m in self.names.items() if s == scheme]

    def refusal(self, name: str) -> NotProvidedError:
        scheme = name.split(":", 1)[0]
        kind = SCHEMES.get(scheme, "")
        same_kind = [m.id for m in self.models if m.kind == kind]
        key = f"models.{same_kind[0] if len(same_kind) == 1 else '<id>'}.provides"
        listed = sorted({p for m in self.models for p in m.provides if p.startswith(scheme + ":")})
        have = f" (it provides {', '.join(listed)})" if listed else ""
        return NotProvidedError(f"{name!r} is not provided by {self.where}{have}: no download is made; add "
                                f"\"{name}\" to {key} in the manifest (with the model's pinned files) and rebuild")


# ---- the model's facts the libraries need ----

def model_config(m: Model) -> dict[str, Any]:
    """``{"model_cfg", "preprocess_cfg"}`` of a CLIP model: its config artifact, else open_clip's
    built-in config of its ``arch``; ``preprocess_cfg`` completed from the verify table."""
    from mlfreeze_runtime import clip as rclip

    cfg_path = m.role("config")
    if cfg_path is not None:
        data = rclip.read_config(cfg_path)
    else:
        base = _builtin_config(m.arch) if ":" not in m.arch else None
        if base is None:
            raise rclip.ClipLoadError(f"model {m.id!r}: arch {m.arch!r} is no open_clip built-in and no config "
                                      "artifact declares it")
        data = {"model_cfg": base, "preprocess_cfg": {}}
    pp = dict(data.get("preprocess_cfg") or {})
    for key in ("mean", "std", "interpolation", "resize_mode"):
        if key not in pp and key in m.verify:
            pp[key] = m.verify[key]
    return {"model_cfg": data["model_cfg"], "preprocess_cfg": pp}


def _builtin_config(arch: str) -> dict[str, Any] | None:
    """open_clip's built-in config of ``arch``, read from its ``model_configs/`` folder without
    importing open_clip (which imports torch: the runtime hook must stay light)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "model_configs" / f"{arch}.json"
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else None
    if sys.modules.get("open_clip") is not None:  # a config registered in this process
        got = sys.modules["open_clip"].get_model_config(arch)
        return dict(got) if got else None
    return None


def revision_of(m: Model) -> str:
    """The hub revision the cache layout names: the manifest's ``revision``, else 40 hex digits
    derived from the weights' sha256 (a stable stand-in for a commit)."""
    if m.revision:
        return m.revision
    w = m.role("weights")
    seed = f"{m.id}:{w.name if w else ''}:{w.stat().st_size if w and w.exists() else 0}"
    return hashlib.sha1(seed.encode()).hexdigest()


def _link(src: Path, dest: Path) -> None:
    src = Path(src).resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    for how in (os.symlink, os.link):
        try:
            how(src, dest)
            return
        except OSError:
            continue
    shutil.copyfile(src, dest)


def hub_layout(resolver: Resolver, root: Path) -> Path:
    """Lay out a Hugging Face hub cache under ``root/hub`` holding every ``hf-hub:`` name the
    models provide (and the hub tokenizers their configs name), as links to the verified files.
    Returns the cache folder (the value for ``HF_HUB_CACHE``)."""
    hub = root / "hub"
    repos: dict[str, tuple[Model, dict[str, Path]]] = {}
    for name, _tag, m in resolver.by_scheme("hf-hub"):
        files: dict[str, Path] = {}
        w = m.role("weights")
        if w is not None:
            files[HUB_FILES["weights"] if w.suffix == ".safetensors" else "open_clip_pytorch_model.bin"] = w
        files.update(m.with_role("tokenizer"))
        repos[name] = (m, files)
    for m in {id(m): m for _n, _t, m in resolver.by_scheme("open_clip")}.values():
        tokenizer_files = m.with_role("tokenizer")
        if tokenizer_files and m.kind == "clip":
            with _suppress():
                text = model_config(m)["model_cfg"].get("text_cfg") or {}
                hub_name = text.get("hf_tokenizer_name")
                if hub_name:
                    repos.setdefault(hub_name, (m, dict(tokenizer_files)))
    for repo, (m, files) in repos.items():
        rev = revision_of(m)
        base = hub / f"models--{repo.replace('/', '--')}"
        snap = base / "snapshots" / rev
        for fname, src in files.items():
            _link(src, snap / fname)
        if m.role("config") is not None or m.arch:
            with _suppress():
                cfg = model_config(m)
                (snap / HUB_FILES["config"]).write_text(json.dumps(cfg), encoding="utf-8")
        (base / "refs").mkdir(parents=True, exist_ok=True)
        (base / "refs" / "main").write_text(rev, encoding="utf-8")
    hub.mkdir(parents=True, exist_ok=True)
    return hub


class _suppress:
    """``contextlib.suppress(Exception)`` without importing contextlib's extras at start."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return exc[0] is not None and issubclass(exc[0], Exception)


# ---- installing ----

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {"resolver": None, "root": None, "patched": set()}


def current() -> Resolver | None:
    """The resolver :func:`install` put in place (None before)."""
    return _STATE["resolver"]  # type: ignore[no-any-return]


def _models_from_dir(models_dir: Path | str | None) -> tuple[list[Model], str]:
    from mlfreeze_runtime.modelindex import ModelIndexError, find_models_dir, read_models_index

    directory, _source = find_models_dir(models_dir)
    if directory is None:
        return [], "this app's models (no models folder: MLFREEZE_MODELS_DIR is not set)"
    try:
        index = read_models_index(directory, check_files=False)
    except ModelIndexError:
        return [], f"the models of {directory} (models.json unreadable)"
    return [from_entry(e) for e in index.models], f"the models of {directory / 'models.json'}"


def install(models: Iterable[Model] | None = None, *, models_dir: Path | str | None = None,
            where: str | None = None, work_dir: Path | None = None) -> Resolver:
    """Make by-name loads resolve to ``models`` (default: the models.json of ``models_dir``, else
    of :func:`mlfreeze_runtime.modelindex.find_models_dir`) in this process; returns the resolver.

    Forces the hub offline (:data:`OFFLINE_ENV`), lays out the hub cache (:func:`hub_layout`, under
    ``work_dir``, default a folder in the temporary directory named by the models' digest) and sets
    ``HF_HUB_CACHE`` to it, and patches open_clip, OpenAI clip and insightface when they are (or
    once they are) imported. Calling it again replaces the models; the patches stay."""
    with _LOCK:
        for key, value in OFFLINE_ENV.items():
            os.environ[key] = value
        if models is None:
            found, label = _models_from_dir(models_dir)
        else:
            found, label = list(models), "the verified models"
        resolver = Resolver(found, where=where or label)
        digest = hashlib.sha256(json.dumps(sorted((m.id, sorted((n, str(p)) for n, p in m.files.items()), m.provides)
                                                  for m in found)).encode()).hexdigest()[:16]
        root = work_dir or Path(tempfile.gettempdir()) / f"mlfreeze-names-{_uid()}-{digest}"
        try:
            hub = hub_layout(resolver, root)
        except OSError:  # an unwritable temporary folder: hub names then fail offline, nothing is fetched
            hub = root / "hub"
        os.environ[HUB_CACHE_ENV] = str(hub)
        _STATE["resolver"], _STATE["root"] = resolver, root
        _sync_hub_constants()
        _install_import_hook()
        for module in list(PATCHES):
            # a None entry is an import blocked in this process (a library this build must not use): absent
            loaded = sys.modules.get(module)
            if loaded is not None:
                _apply(module, loaded)
                if module == "open_clip":
                    _register_open_clip_architectures(resolver)
        return resolver


def _uid() -> str:
    getuid = getattr(os, "getuid", None)
    return str(getuid()) if getuid is not None else os.environ.get("USERNAME", "user")


def _sync_hub_constants() -> None:
    """huggingface_hub reads its environment once, at import: update it when already imported."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is None:
        return
    constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
    constants.HF_HUB_CACHE = os.environ[HUB_CACHE_ENV]  # type: ignore[attr-defined]
    if hasattr(constants, "HUGGINGFACE_HUB_CACHE"):
        constants.HUGGINGFACE_HUB_CACHE = os.environ[HUB_CACHE_ENV]  # type: ignore[attr-defined]


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then the patch for the module (everything else is the real loader's)."""

    def __init__(self, real: Any, fullname: str) -> None:
        self._real = real
        self._fullname = fullname

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self._real, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        self._real.exec_module(module)
        _apply(self._fullname, module)

    def __getattr__(self, name: str) -> Any:  # get_source (TorchScript), get_resource_reader, is_package, ...
        return getattr(self._real, name)


class _ImportHook(importlib.abc.MetaPathFinder):
    """Wraps the loader of the packages in :data:`PATCHES` so their patch runs once they are imported."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in PATCHES or fullname in _STATE["patched"]:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(spec.loader, fullname)
        return spec


def _install_import_hook() -> None:
    if not any(isinstance(f, _ImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _ImportHook())


def _apply(fullname: str, module: ModuleType) -> None:
    if fullname in _STATE["patched"]:
        return
    try:
        PATCHES[fullname](module)
    except Exception as exc:  # noqa: BLE001 - a library whose internals moved: say so, never break its import
        warnings.warn(f"mlfreeze: by-name loads of {fullname} are not resolved ({type(exc).__name__}: {exc}); "
                      "hub downloads stay refused offline", RuntimeWarning, stacklevel=2)
    _STATE["patched"].add(fullname)


def _resolver() -> Resolver:
    r = current()
    return r if r is not None else Resolver([])


# ---- open_clip ----

def _register_open_clip_architectures(resolver: Resolver) -> None:
    """Register each provided open_clip model name as the providing model's architecture (a
    config file in a folder added with ``open_clip.add_model_config``, so open_clip's own rescans
    keep it)."""
    import open_clip

    root = _STATE["root"] or Path(tempfile.mkdtemp(prefix="mlfreeze-names-"))
    folder = Path(root) / "open_clip_configs"
    wrote = False
    for name, _tag, m in resolver.by_scheme("open_clip"):
        try:
            cfg = model_config(m)["model_cfg"]
        except Exception:  # noqa: BLE001 - the gate fails this model's load; resolution just stays out
            continue
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps(cfg), encoding="utf-8")
        wrote = True
    if wrote:
        from open_clip import factory

        if folder in factory._MODEL_CONFIG_PATHS:
            factory._rescan_model_configs()
        else:
            open_clip.add_model_config(folder)


def checked_config(m: Model) -> dict[str, Any]:
    """:func:`model_config`, refused (:class:`mlfreeze_runtime.clip.ClipLoadError`, one line) the way
    the runtime's own loader refuses it: a hub tokenizer or vocabulary file nothing pins, a
    preprocessing value open_clip does not support."""
    from mlfreeze_runtime import clip as rclip

    cfg = model_config(m)
    rclip.refuse_unpinned_inputs(m.arch, cfg["model_cfg"], tokenizer_files=bool(m.with_role("tokenizer")))
    pp = rclip.check_preprocess_cfg(cfg["preprocess_cfg"], where=f"model {m.id!r}: preprocess_cfg")
    return {"model_cfg": cfg["model_cfg"], "preprocess_cfg": pp}


def _pretrained_cfg(m: Model) -> dict[str, Any]:
    """open_clip's pretrained config for a provided tag: the local file (its own ``file`` key),
    QuickGELU and the preprocessing of the model."""
    cfg = checked_config(m)
    out: dict[str, Any] = {"file": str(m.role("weights")), "quick_gelu": bool(cfg["model_cfg"].get("quick_gelu"))}
    out.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg["preprocess_cfg"].items()})
    return out


def _patch_open_clip(module: ModuleType) -> None:
    from open_clip import factory, pretrained

    resolver = _resolver

    orig_get_pretrained_cfg = pretrained.get_pretrained_cfg

    def get_pretrained_cfg(model: str, tag: str) -> dict[str, Any]:
        m = resolver().lookup("open_clip", model, tag)
        if m is not None:
            return _pretrained_cfg(m)
        cfg = orig_get_pretrained_cfg(model, tag)
        if cfg:  # a tag open_clip would download
            raise resolver().refusal(f"open_clip:{model.replace('/', '-')}/{tag}")
        return cfg  # type: ignore[no-any-return]

    orig_from_hf = pretrained.download_pretrained_from_hf

    def download_pretrained_from_hf(model_id: str, filename: str | None = None, revision: str | None = None,
                                    cache_dir: str | None = None) -> Any:
        if resolver().lookup("hf-hub", model_id) is None:
            raise resolver().refusal(f"hf-hub:{model_id}")
        # the laid-out cache (HF_HUB_CACHE), whatever cache_dir the app passed
        return orig_from_hf(model_id, filename=filename, revision=revision, cache_dir=None)

    def download_pretrained_from_url(url: str, cache_dir: str | None = None) -> Any:
        raise resolver().refusal(f"url:{url}")

    def check_hub(model_name: Any) -> None:
        if not isinstance(model_name, str):
            return
        if model_name.startswith("hf-hub:"):
            repo = model_name[len("hf-hub:"):]
            m = resolver().lookup("hf-hub", repo)
            if m is None:
                raise resolver().refusal(model_name)
            checked_config(m)
            return
        for name, _tag, m in resolver().by_scheme("open_clip"):  # a provided name: its inputs must be pinned
            if name == model_name.replace("/", "-"):
                checked_config(m)
                return

    def front(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(model_name: Any = "", *args: Any, **kwargs: Any) -> Any:
            check_hub(model_name)
            return fn(model_name, *args, **kwargs)
        wrapper.__name__, wrapper.__doc__, wrapper.__wrapped__ = fn.__name__, fn.__doc__, fn  # type: ignore[attr-defined]
        return wrapper

    namespaces: tuple[Any, ...] = (pretrained, factory, module)
    for ns in namespaces:
        for fname, fn in (("get_pretrained_cfg", get_pretrained_cfg),
                          ("download_pretrained_from_hf", download_pretrained_from_hf),
                          ("download_pretrained_from_url", download_pretrained_from_url)):
            if hasattr(ns, fname):
                setattr(ns, fname, fn)
    for fname in ("create_model", "create_model_and_transforms", "create_model_from_pretrained", "get_tokenizer",
                  "get_model_config"):
        original = getattr(factory, fname)
        wrapped = front(original)
        setattr(factory, fname, wrapped)
        if getattr(module, fname, None) is original:
            setattr(module, fname, wrapped)
    _register_open_clip_architectures(_resolver())


# ---- OpenAI CLIP (the `clip` package) ----

def _clip_model(clip_module: ModuleType, m: Model, device: Any) -> Any:
    """OpenAI's ``clip.model.CLIP`` built from the manifest model's config and weights, as
    ``clip.load`` builds it (fp16 weights, float on the CPU, eval mode)."""
    import torch
    from clip.model import CLIP, convert_weights

    cfg = model_config(m)["model_cfg"]
    vc, tc = cfg["vision_cfg"], cfg["text_cfg"]
    if isinstance(vc.get("layers"), (list, tuple)) or vc.get("head_width", 64) != 64 or "timm_model_name" in vc \
            or "hf_model_name" in tc:
        raise NotProvidedError(f"clip:{m.id}: OpenAI's CLIP class cannot build arch {m.arch!r} (a ViT with 64-wide "
                               "vision heads and open_clip's text tower are needed); load it with open_clip")
    size = vc["image_size"][0] if isinstance(vc["image_size"], (list, tuple)) else vc["image_size"]
    model = CLIP(int(cfg["embed_dim"]), int(size), int(vc["layers"]), int(vc["width"]), int(vc["patch_size"]),
                 int(tc["context_length"]), int(tc["vocab_size"]), int(tc["width"]),
                 int(tc.get("heads", tc["width"] // 64)), int(tc["layers"]))
    weights = m.role("weights")
    if weights is None:
        raise NotProvidedError(f"clip:{m.id}: the model lists no weights file")
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    for key in ("input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)
    convert_weights(model)
    model.load_state_dict(state, strict=True)
    model = model.to(device)
    if str(device) == "cpu":
        model.float()
    return model.eval()


def _patch_clip(module: ModuleType) -> None:
    clip_clip = sys.modules.get("clip.clip")
    if clip_clip is None or not hasattr(clip_clip, "_MODELS") or not hasattr(clip_clip, "load"):
        return  # another package named clip: nothing to resolve
    orig_load = clip_clip.load

    def load(name: str, device: Any = None, jit: bool = False, download_root: str | None = None) -> Any:
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        m = _resolver().lookup("clip", name)
        if m is not None:
            if jit:
                warnings.warn(f"clip:{name} resolves to the manifest's weights, not OpenAI's JIT archive; "
                              "loading the non-JIT model", stacklevel=2)
            model = _clip_model(clip_clip, m, device)
            return model, clip_clip._transform(model.visual.input_resolution)
        if name in clip_clip._MODELS:
            raise _resolver().refusal(f"clip:{name}")
        return orig_load(name, device=device, jit=jit, download_root=download_root)

    def _download(url: str, root: str) -> str:
        raise _resolver().refusal(f"url:{url}")

    load.__doc__ = orig_load.__doc__
    setattr(clip_clip, "load", load)  # noqa: B010 - a module of another package, typed as ModuleType
    setattr(clip_clip, "_download", _download)  # noqa: B010
    if getattr(module, "load", None) is orig_load:
        module.load = load  # type: ignore[attr-defined]


# ---- insightface ----

def _face_folder(m: Model) -> Path:
    from mlfreeze_runtime.faces import assemble_folder

    root = _STATE["root"]
    tmp = Path(root) / "insightface" / m.id if root is not None else None
    return assemble_folder(m.onnx_files(), tmp)


def _patch_insightface(module: ModuleType) -> None:
    import importlib

    storage = importlib.import_module("insightface.utils.storage")
    utils = importlib.import_module("insightface.utils")
    face_analysis = importlib.import_module("insightface.app.face_analysis")
    zoo = importlib.import_module("insightface.model_zoo.model_zoo")
    zoo_pkg = importlib.import_module("insightface.model_zoo")

    def pack(name: str) -> Path:
        m = _resolver().lookup("insightface", str(name))
        if m is None:
            raise _resolver().refusal(f"insightface:{name}")
        return _face_folder(m)

    def download(sub_dir: str, name: str, force: bool = False, root: str = "~/.insightface") -> str:
        return str(pack(name))

    def ensure_available(sub_dir: str, name: str, root: str = "~/.insightface") -> str:
        return str(pack(name))

    def file_in_pack(spec: str) -> str:
        head, _, rest = spec.replace("\\", "/").partition("/")
        folder = pack(head)
        if not rest:
            return str(folder)
        target = folder / rest
        if not target.is_file():
            m = _resolver().lookup("insightface", head)
            have = ", ".join(sorted(m.onnx_files())) if m is not None else ""
            raise NotProvidedError(f"insightface:{head} provides {have}, not {rest!r}: load one of those files, or add "
                                   f"a model with {rest!r} to the manifest")
        return str(target)

    def download_onnx(sub_dir: str, model_file: str, force: bool = False, root: str = "~/.insightface",
                      download_zip: bool = False) -> str:
        return file_in_pack(model_file)

    orig_get_model = zoo.get_model

    def get_model(name: Any, **kwargs: Any) -> Any:
        text = str(name)
        if not os.path.exists(os.path.expanduser(text)) and not os.path.isabs(text) \
                and kwargs.get("model_descriptor") is None:
            resolved = file_in_pack(text)
            if os.path.isdir(resolved):
                found = zoo.find_onnx_file(resolved)
                if found is None:
                    raise NotProvidedError(f"insightface:{text} holds no .onnx file")
                resolved = found
            kwargs.pop("download", None)
            return orig_get_model(resolved, **kwargs)
        return orig_get_model(name, **kwargs)

    get_model.__doc__ = orig_get_model.__doc__
    for ns in (storage, utils):
        for fname, fn in (("download", download), ("ensure_available", ensure_available),
                          ("download_onnx", download_onnx)):
            if hasattr(ns, fname):
                setattr(ns, fname, fn)
    face_analysis.ensure_available = ensure_available  # type: ignore[attr-defined]
    zoo.download_onnx = download_onnx  # type: ignore[attr-defined]
    zoo.get_model = get_model  # type: ignore[attr-defined]
    if getattr(zoo_pkg, "get_model", None) is orig_get_model:
        zoo_pkg.get_model = get_model  # type: ignore[attr-defined]


#: package -> the patch run once it is imported
PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "open_clip": _patch_open_clip,
    "clip": _patch_clip,
    "insightface": _patch_insightface,
}


def reset_for_tests() -> None:
    """Forget the resolver (patches already applied stay; they consult :func:`current`)."""
    _STATE["resolver"] = None
