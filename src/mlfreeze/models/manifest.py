"""src/mlfreeze/specs/models.toml -> frozen dataclasses (docs/architecture.md "Models").

Schema (docs/architecture.md "Model fetch"):

```toml
[sets]
default = ["clip-vit-b-32-openai", "buffalo_l"]

[models.<id>]
kind = "clip"                 # clip | insightface
embed_dim = 512
license = "MIT"
arch = "ViT-B-32-quickgelu"   # open_clip model name (clip); "" or absent for insightface
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
that names the file and the dotted key.
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

KINDS = ("clip", "insightface")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DERIVED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*@[0-9a-f]{64}$")
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
    return [manifest.models[i] for i in manifest.sets[set_name]]


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
    return ModelSpec(id=model_id, kind=kind, embed_dim=embed_dim, license=license_, arch=arch,
                     description=description, artifacts=artifacts, verify=MappingProxyType(dict(verify)),
                     onnx_agreement=MappingProxyType(dict(onnx_agreement)))


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
