"""src/mlfreeze/specs/models.toml -> frozen dataclasses (docs/architecture.md "Models").

Schema (docs/architecture.md "Model fetch"):

```toml
[sets]
default = ["clip-vit-b-32-openai", "buffalo_l"]

[models.<id>]
kind = "clip"                 # clip | insightface
embed_dim = 512
license = "MIT"
arch = "ViT-B-32-quickgelu"   # clip: an open_clip built-in, a name a config artifact defines, or
                              # "hf-hub:<org>/<repo>" with `revision` and its config (+ tokenizer) as artifacts
revision = "<40 hex>"         # the pinned hub revision (hf-hub arch); optional elsewhere
provides = ["open_clip:ViT-B-32/openai", "clip:ViT-B/32"]   # by-name loads it answers (mlfreeze_runtime.names)
description = "..."           # optional

[[models.<id>.artifacts]]
file = "open_clip_model.safetensors"
sha256 = "<64 hex>"
size = 605143284
urls = ["https://...", "file:///...", "demo/x.bin"]   # tried in order; no scheme = relative to this file
extract = false               # true: a .zip whose members are listed below
role = "weights"              # optional, passed through ("weights", "config", "image_onnx", "text_onnx",
                              # "agreement", ...)
derived_from = "<id>@<sha256>"  # required for roles image_onnx/text_onnx (an ONNX export of that
                              # model's weights, src/mlfreeze/models/export.py) and agreement (the
                              # towers' agreement record with torch), refused elsewhere
bundle = true                 # optional (non-archives): goes into a bundle's models/<id>/
max_unpacked = 1000000        # optional (archives): bound on the extracted total; default: the sum
                              # of member sizes when all are declared, else max(4 x size, 64 MiB)

[models.<id>.artifacts.members]     # archives only: the members that are extracted
"det_10g.onnx" = { sha256 = "<64 hex>", size = 123, bundle = true }   # size optional, bundle default true

[models.<id>.verify]          # optional, raw: validated by verify/, not here
[models.<id>.onnx_agreement]  # optional, raw: ONNX-vs-torch tolerances, checked by mlfreeze_runtime.verify.onnx_checks
```

Every artifact has a 64-hex sha256 and a size; unknown keys are refused with an error
that names the file and the dotted key. ``arch`` and ``provides`` are validated here too
(:func:`check_arch`): an architecture whose config or tokenizer would come from a hub at run time,
unpinned, is refused when the manifest loads, before anything is fetched or run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

from mlfreeze.errors import ConfigError, UsageError
from mlfreeze.project.config import ProjectConfig
from mlfreeze.schema import Table, read_toml
from mlfreeze_runtime import names as by_name

KINDS = ("clip", "insightface")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DERIVED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*@[0-9a-f]{64}$")
_REVISION = re.compile(r"^[0-9a-f]{40}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
# Names whose tokenizer is a Hugging Face tokenizer (SigLIP's, multilingual ones): its files must be pinned.
_HUB_TOKENIZER_HINTS = ("siglip", "i18n", "multilingual", "xlm", "mt5", "roberta", "nllb", "t5")
OPEN_CLIP_MODELS = Path(__file__).with_name("open_clip_models.txt")  # open_clip 3.3.0's built-ins, pinned
# exports of a model's weights and their agreement record with torch (src/mlfreeze/models/export.py)
DERIVED_ROLES = ("image_onnx", "text_onnx", "agreement")
DEFAULT_UNPACK_RATIO = 4
DEFAULT_UNPACK_FLOOR = 64 << 20  # small demo archives of compressible models


@dataclass(frozen=True, kw_only=True)
class MemberSpec:
    """One member of an archive: extracted, checked, and maybe bundled."""

    name: str
    sha256: str | None = None
    size: int | None = None
    bundle: bool = True


@dataclass(frozen=True, kw_only=True)
class ArtifactSpec:
    file: str
    sha256: str
    size: int
    urls: tuple[str, ...]
    extract: bool = False
    members: tuple[MemberSpec, ...] = ()
    role: str = "weights"
    bundle: bool = True
    max_unpacked: int | None = None
    derived_from: str = ""  # "<model id>@<weights sha256>" for an exported artifact

    @property
    def unpack_limit(self) -> int:
        """Bound on the bytes an archive may extract to."""
        if self.max_unpacked is not None:
            return self.max_unpacked
        sizes = [m.size for m in self.members]
        if sizes and all(s is not None for s in sizes):
            return sum(s for s in sizes if s is not None)
        return max(self.size * DEFAULT_UNPACK_RATIO, DEFAULT_UNPACK_FLOOR)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    id: str
    kind: str
    embed_dim: int
    license: str
    arch: str = ""
    description: str = ""
    artifacts: tuple[ArtifactSpec, ...] = ()
    provides: tuple[str, ...] = ()  # by-name loads it answers (mlfreeze_runtime.names)
    revision: str = ""  # pinned hub revision (hf-hub arch)
    verify: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False)
    onnx_agreement: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False)


@dataclass(frozen=True, kw_only=True)
class Manifest:
    path: Path
    sets: dict[str, tuple[str, ...]]
    models: dict[str, ModelSpec]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def set_models(self, set_name: str) -> list[ModelSpec]:
        return check_set(self, set_name)

    def resolve_url(self, url: str) -> str:
        """An absolute URL for ``url``: no scheme means a path relative to the manifest."""
        if urlparse(url).scheme:
            return url
        return (self.base_dir / url).resolve().as_uri()


def default_path() -> Path:
    import mlfreeze.specs

    return Path(mlfreeze.specs.__file__).parent / "models.toml"


def load_manifest(path: Path | None = None) -> Manifest:
    path = Path(path) if path is not None else default_path()
    top = Table(read_toml(path), path)
    sets_t = top.sub("sets")
    models_t = top.sub("models")
    top.done()

    models: dict[str, ModelSpec] = {}
    for model_id, data in models_t.rest().items():
        models[model_id] = _model(model_id, Table(data, path, f"models.{model_id}"))

    sets: dict[str, tuple[str, ...]] = {}
    for name, ids in sets_t.rest().items():
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ConfigError(f"{path}: key 'sets.{name}' must be a list of model ids")
        # ids are checked when the set is used (check_set): the demo set's entries may land later
        sets[name] = tuple(ids)
    return Manifest(path=path, sets=sets, models=models)


def check_set(manifest: Manifest, set_name: str) -> list[ModelSpec]:
    """The models of ``set_name``; unknown set -> UsageError, unknown id -> ConfigError."""

    if set_name not in manifest.sets:
        known = ", ".join(sorted(manifest.sets)) or "none"
        raise UsageError(f"unknown model set {set_name!r} in {manifest.path} (known: {known})")
    missing = [i for i in manifest.sets[set_name] if i not in manifest.models]
    if missing:
        raise ConfigError(f"{manifest.path}: key 'sets.{set_name}' names {missing[0]!r}, "
                          f"which has no [models.{missing[0]}] table")
    models = [manifest.models[i] for i in manifest.sets[set_name]]
    owners: dict[str, str] = {}
    for model in models:  # within one set (one bundle) each by-name load resolves to one model
        for name in model.provides:
            if name in owners:
                raise ConfigError(f"{manifest.path}: key 'models.{model.id}.provides' names {name!r}, which "
                                  f"models.{owners[name]}.provides of the same set {set_name!r} names too")
            owners[name] = model.id
    return models


def _model(model_id: str, t: Table) -> ModelSpec:
    if not _ID.match(model_id):
        raise ConfigError(f"{t.path}: key '{t.where}' is not a valid model id (letters, digits, . _ -)")
    kind = t.choice("kind", KINDS)
    embed_dim = t.take("embed_dim", int)
    if embed_dim <= 0:
        raise t.error("embed_dim", "must be positive")
    license_ = t.take("license", str)
    arch = t.opt("arch", str, "")
    if kind == "clip" and not arch:
        raise t.error("arch", "is missing (the open_clip model name, e.g. 'ViT-B-32-quickgelu')")
    revision = t.opt("revision", str, "")
    if revision and not _REVISION.match(revision):
        raise t.error("revision", "must be a 40-hex hub commit (the revision the files were pinned from)")
    provides = t.strings("provides", ())
    description = t.opt("description", str, "")
    verify = t.opt("verify", dict, {})
    onnx_agreement = t.opt("onnx_agreement", dict, {})
    raw_artifacts = t.take("artifacts", list)
    t.done()
    if not raw_artifacts:
        raise t.error("artifacts", "must list at least one artifact")
    artifacts = tuple(_artifact(Table(a, t.path, f"{t.where}.artifacts[{n}]")) for n, a in enumerate(raw_artifacts))
    files = [a.file for a in artifacts]
    if len(set(files)) != len(files):
        raise t.error("artifacts", "names the same file twice")
    for n, a in enumerate(artifacts):
        if a.derived_from and a.derived_from.split("@")[0] != model_id:
            raise ConfigError(f"{t.path}: key '{t.where}.artifacts[{n}].derived_from' names another model "
                              f"({a.derived_from.split('@')[0]!r}); an export belongs to the model it was made from")
    for n, name in enumerate(provides):
        try:
            scheme, _ident, _tag = by_name.parse(name)
        except ValueError as exc:
            raise ConfigError(f"{t.path}: key '{t.where}.provides[{n}]' is {name!r}: {exc}") from None
        if by_name.SCHEMES[scheme] != kind:
            raise ConfigError(f"{t.path}: key '{t.where}.provides[{n}]' is {name!r}, a name of a "
                              f"{by_name.SCHEMES[scheme]} model, but this model's kind is {kind!r}")
    if len(set(provides)) != len(provides):
        raise t.error("provides", "names the same load twice")
    spec = ModelSpec(id=model_id, kind=kind, embed_dim=embed_dim, license=license_, arch=arch,
                     description=description, artifacts=artifacts, verify=MappingProxyType(dict(verify)),
                     onnx_agreement=MappingProxyType(dict(onnx_agreement)), provides=tuple(provides),
                     revision=revision)
    if kind == "clip":
        check_arch(spec, t)
    return spec


def open_clip_builtins() -> dict[str, Path | None]:
    """open_clip's built-in architecture names -> their config JSON: the installed open_clip's
    ``model_configs/`` when it is installed (found without importing it, so no torch), else the
    pinned list beside this module (:data:`OPEN_CLIP_MODELS`, paths None)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "model_configs"
        if folder.is_dir():
            return {p.stem: p for p in sorted(folder.glob("*.json"))}
    lines = OPEN_CLIP_MODELS.read_text(encoding="utf-8").splitlines()
    return {line.strip(): None for line in lines if line.strip() and not line.startswith("#")}


def _hub_tokenizer(arch: str, config: Path | None) -> str:
    """The Hugging Face tokenizer an architecture's config names (``text_cfg.hf_tokenizer_name``),
    else ``arch`` itself when its name says it uses one (SigLIP, multilingual), else ""."""
    import json

    if config is not None:
        try:
            text = (json.loads(config.read_text(encoding="utf-8")).get("text_cfg") or {})
        except (OSError, ValueError, AttributeError):
            text = {}
        if text.get("hf_tokenizer_name"):
            return str(text["hf_tokenizer_name"])
    return arch if any(h in arch.lower() for h in _HUB_TOKENIZER_HINTS) else ""


def check_arch(spec: ModelSpec, t: Table) -> None:
    """Refuse (ConfigError naming ``models.<id>.arch``) an architecture the runtime could only get
    from a hub, unpinned: ``local-dir:`` paths; ``hf-hub:`` ids without a pinned ``revision`` and a
    config artifact (role ``config``); a name that is neither an open_clip built-in nor defined by a
    config artifact; and one whose tokenizer is a Hugging Face tokenizer (SigLIP, multilingual)
    without its files pinned as artifacts of role ``tokenizer``. Never touches the network."""
    roles = {a.role for a in spec.artifacts}
    arch = spec.arch
    has_tokenizer = "tokenizer" in roles
    if arch.startswith("local-dir:"):
        raise t.error("arch", f"is {arch!r}: a local folder is not pinned; list its files as artifacts and name "
                              "the architecture")
    if arch.startswith("hf-hub:"):
        hub_id = arch[len("hf-hub:"):]
        if not _HUB_ID.match(hub_id):
            raise t.error("arch", f"is {arch!r}; expected hf-hub:<org>/<repo>")
        if "config" not in roles:
            raise t.error("arch", f"is {arch!r}, whose config would be read from the hub at run time: add its "
                                  "open_clip_config.json as an artifact with role = \"config\" (and revision)")
        if not spec.revision:
            raise ConfigError(f"{t.path}: key '{t.where}.revision' is missing: arch {arch!r} needs the hub revision "
                              "its pinned files come from")
        if _hub_tokenizer(hub_id, None) and not has_tokenizer:
            raise t.error("arch", f"is {arch!r}, whose tokenizer comes from the Hugging Face hub: add its tokenizer "
                                  "files as artifacts with role = \"tokenizer\"")
        return
    if ":" in arch or "/" in arch:
        raise t.error("arch", f"is {arch!r}; expected an open_clip architecture name or hf-hub:<org>/<repo>")
    if "config" in roles:
        return  # a config artifact defines the architecture under this name (checked again when it is read)
    builtins = open_clip_builtins()
    if arch not in builtins:
        near = ", ".join(sorted(n for n in builtins if n.lower().startswith(arch.lower()[:5]))[:5])
        raise t.error("arch", f"is {arch!r}, which is no open_clip built-in{f' (near: {near})' if near else ''} and "
                              "no config artifact defines: add one with role = \"config\", or fix the name")
    if _hub_tokenizer(arch, builtins[arch]) and not has_tokenizer:
        raise t.error("arch", f"is {arch!r}, whose tokenizer comes from the Hugging Face hub: add its tokenizer "
                              "files as artifacts with role = \"tokenizer\"")


def _safe_name(t: Table, key: str, name: str) -> str:
    p = PurePosixPath(name)
    if not name or "\\" in name or p.is_absolute() or ".." in p.parts or name.startswith("~") or ":" in name:
        raise t.error(key, f"has an unsafe file name {name!r} (relative, no '..', no drive)")
    return name


def _sha(t: Table, key: str) -> str:
    value: str = t.take(key, str)
    if not _HEX64.match(value):
        raise t.error(key, "must be 64 lowercase hex digits (a sha256)")
    return value


def _artifact(t: Table) -> ArtifactSpec:
    file = _safe_name(t, "file", t.take("file", str))
    if "/" in file:
        raise t.error("file", "must be a plain file name")
    sha256 = _sha(t, "sha256")
    size = t.take("size", int)
    if size < 0:
        raise t.error("size", "must not be negative")
    urls = t.strings("urls")
    if not urls:
        raise t.error("urls", "must list at least one URL")
    extract = t.opt("extract", bool, False)
    role = t.opt("role", str, "weights")
    bundle = t.opt("bundle", bool, True)
    max_unpacked = t.opt("max_unpacked", int, None)
    derived = t.opt("derived_from", str, "")
    if role in DERIVED_ROLES and not _DERIVED.match(derived):
        raise t.error("derived_from", f"must be '<model id>@<64 hex sha256>' for role {role!r}")
    if derived and role not in DERIVED_ROLES:
        raise t.error("derived_from", f"is only allowed with role {' or '.join(DERIVED_ROLES)}")
    members_t = t.sub("members", required=False)
    t.done()
    members: list[MemberSpec] = []
    for name, data in members_t.rest().items():
        key = f"members.{name}"
        _safe_name(t, key, name)
        mt = Table(data, t.path, t.key(key))
        msha = _sha(mt, "sha256") if "sha256" in data else None
        msize = mt.opt("size", int, None)
        if msize is not None and msize < 0:
            raise mt.error("size", "must not be negative")
        members.append(MemberSpec(name=name, sha256=msha, size=msize, bundle=mt.opt("bundle", bool, True)))
        mt.done()
    if extract and not members:
        raise t.error("members", "must list the archive's members when extract = true")
    if members and not extract:
        raise t.error("members", "is only allowed with extract = true")
    return ArtifactSpec(file=file, sha256=sha256, size=size, urls=urls, extract=extract, members=tuple(members),
                        role=role, bundle=bundle, max_unpacked=max_unpacked, derived_from=derived)


def check_model_set(config: ProjectConfig, manifest_arg: str | None, model_set: str) -> Manifest:
    """Load the manifest (TOML only) and refuse an unknown set before any stage runs (UsageError, exit 2).

    The set's models must be of kinds the project ``uses`` (a CLIP-only app cannot build a set with
    face models: they would be neither collected nor self-tested)."""
    manifest = load_manifest(Path(manifest_arg) if manifest_arg else config.manifest)
    models = check_set(manifest, model_set)
    kinds = {"clip": "clip", "insightface": "faces"}
    unused = [m.id for m in models if kinds.get(m.kind, m.kind) not in config.uses]
    if unused:
        raise UsageError(f"model set {model_set!r} of {manifest.path} holds {', '.join(unused)}, of a kind this "
                         f"project does not use (uses = {list(config.uses)}); pick another set or add to `uses`")
    return manifest
