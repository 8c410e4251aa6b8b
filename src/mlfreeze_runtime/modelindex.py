"""``models.json``: the one reader and writer of a models folder's index.

A models folder (a bundle's ``models/``, or any folder ``MLFREEZE_MODELS_DIR`` names) holds::

    models.json
    <id>/<file>...            the files each model lists (paths relative to the folder)
    <id>/golden.json          pinned reference outputs (optional)
    _probes/                  the probe inputs of the frozen self-test

``models.json`` (schema: docs/models-index.schema.json, the same document as :data:`SCHEMA`)::

    {"schema_version": 1, "set": "demo", "expected_providers": ["CPUExecutionProvider"],
     "models": [{"id": "demo-clip", "kind": "clip", "arch": "mlfreeze-demo-clip", "embed_dim": 512,
                 "provides": ["open_clip:ViT-B-32/openai", "clip:ViT-B/32", ...],
                 "files": {"demo_clip.safetensors": "demo-clip/demo_clip.safetensors", ...},
                 "sha256": {"demo-clip/demo_clip.safetensors": "<64 hex>", ...},
                 "roles": {"demo_clip.safetensors": "weights", "demo_clip_config.json": "config"},
                 "verify": {...the [models.<id>.verify] table: thresholds, det_size, det_thresh...},
                 "golden": "demo-clip/golden.json"}]}

Beyond the schema the reader checks what JSON Schema cannot say simply: a clip model names its
``arch``; every path stays inside the folder; ids are unique; and (``check_files=True``, the
app's reading) every listed file exists. Every problem is one :class:`ModelIndexError` line that
names the file, the model and what to do.

The models folder is found by :func:`find_models_dir`: ``$MLFREEZE_MODELS_DIR`` (set by the
user, or by the bundle's runtime hook, which also sets ``MLFREEZE_MODELS_DIR_FROZEN`` to the same
value so the source can be told apart), else ``models/`` beside a frozen executable, else none.

Standard library only: the lite bundle and the app import this without numpy or jsonschema.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

SCHEMA_VERSION = 1
INDEX = "models.json"
MODELS_ENV = "MLFREEZE_MODELS_DIR"
FROZEN_MARK_ENV = "MLFREEZE_MODELS_DIR_FROZEN"  # set by mlfreeze/specs/hooks/rthook_models_dir.py with the value it set
KINDS = ("clip", "insightface")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".npz")
FIX = f"reinstall the bundle, or set {MODELS_ENV} to a folder holding the complete model set"

_HEX64 = "^[0-9a-fA-F]{64}$"
#: The JSON Schema of models.json (docs/models-index.schema.json holds the same document; a test
#: keeps the two equal and checks this module's validator against the jsonschema library).
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://mlfreeze.invalid/schemas/models-index.schema.json",
    "title": "models.json: the index of a bundle's models folder",
    "description": "Written by mlfreeze freeze (mlfreeze_runtime.modelindex.write_models_index); read by the app, "
                   "the gate and <app>-selftest through mlfreeze_runtime.modelindex.read_models_index. Paths are "
                   "relative to the folder holding models.json.",
    "type": "object",
    "required": ["schema_version", "models"],
    "properties": {
        "schema_version": {"const": 1},
        "set": {"type": "string"},
        "expected_providers": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "models": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "kind", "embed_dim", "files"],
                "properties": {
                    "id": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$"},
                    "kind": {"enum": ["clip", "insightface"]},
                    "arch": {"type": "string"},
                    "embed_dim": {"type": "integer", "minimum": 1},
                    "files": {"type": "object", "minProperties": 1,
                              "additionalProperties": {"type": "string", "minLength": 1}},
                    "sha256": {"type": "object", "additionalProperties": {"type": "string", "pattern": _HEX64}},
                    "roles": {"type": "object", "additionalProperties": {"type": "string"}},
                    # file -> "<model id>@<sha256 of the weights it was exported from>" (ONNX towers)
                    "derived_from": {"type": "object",
                                     "additionalProperties": {"type": "string", "pattern": "^.+@[0-9a-f]{64}$"}},
                    "verify": {"type": "object"},
                    "golden": {"type": "string", "minLength": 1},
                    "config": {"type": "string", "minLength": 1},
                    # the by-name loads the model answers (mlfreeze_runtime.names): open_clip:<name>/<tag>,
                    # hf-hub:<org>/<repo>, clip:<name>, insightface:<pack>
                    "provides": {"type": "array", "items": {"type": "string", "minLength": 1}},
                    "revision": {"type": "string", "pattern": "^[0-9a-f]{40}$"},
                },
            },
        },
    },
}


class ModelIndexError(ValueError):
    """models.json is missing or malformed, or names a file that is not there (one line)."""


class ModelsDirMissing(ModelIndexError):
    """There is no models folder at all (none configured, or the configured one does not exist)."""


# ---- the validator: the subset of JSON Schema that SCHEMA uses ----
_TYPES: dict[str, Any] = {"object": dict, "array": list, "string": str, "boolean": bool}


def _type_ok(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def schema_errors(value: Any, schema: Mapping[str, Any] = SCHEMA, where: str = "") -> list[str]:
    """Every violation of ``schema`` by ``value``, as ``"<json path>: <problem>"`` lines.

    Supports the keywords :data:`SCHEMA` uses (type, const, enum, required, properties,
    additionalProperties, minProperties, items, minLength, minimum, pattern); an unknown
    keyword is a ``ValueError``, so the schema cannot grow past what this checks.
    """
    known = {"$schema", "$id", "title", "description", "type", "const", "enum", "required", "properties",
             "additionalProperties", "minProperties", "items", "minLength", "minimum", "pattern"}
    unknown = set(schema) - known
    if unknown:
        raise ValueError(f"schema keyword(s) {sorted(unknown)} are not supported by modelindex.schema_errors")
    at = where or "(top level)"
    if "type" in schema and not _type_ok(value, schema["type"]):
        return [f"{at}: must be {'an' if schema['type'][0] in 'aeiou' else 'a'} {schema['type']}, "
                f"got {type(value).__name__} {_short(value)}"]
    errors: list[str] = []
    if "const" in schema and value != schema["const"]:
        errors.append(f"{at}: must be {json.dumps(schema['const'])}, got {_short(value)}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {_short(value)} is not one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{at}: must not be empty")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{at}: {_short(value)} does not match {schema['pattern']}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        errors.append(f"{at}: must be >= {schema['minimum']}, got {value}")
    if isinstance(value, dict):
        if len(value) < schema.get("minProperties", 0):
            errors.append(f"{at}: must not be empty")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            sub = f"{where}.{key}" if where else str(key)
            if key in props:
                errors += schema_errors(item, props[key], sub)
            elif isinstance(extra, Mapping):
                errors += schema_errors(item, extra, sub)
            elif extra is False:
                errors.append(f"{sub}: is not a known key")
    if isinstance(value, dict):  # after the values, so a wrong schema_version is named first
        errors += [f"{at}: missing key {key!r}" for key in schema.get("required", ()) if key not in value]
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{i}]")
    return errors


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


# ---- the index as data ----
@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """One model of the index, its relative paths resolved against the models folder ``root``."""

    id: str
    kind: str
    embed_dim: int
    root: Path
    files: dict[str, str] = field(default_factory=dict)  # artifact name -> relpath
    sha256: dict[str, str] = field(default_factory=dict)  # relpath -> hex
    roles: dict[str, str] = field(default_factory=dict)  # artifact name -> weights|config|...
    verify: dict[str, Any] = field(default_factory=dict)  # the [models.<id>.verify] table
    arch: str | None = None
    config: str | None = None  # relpath of an open_clip config (hand-written indexes)
    golden: str | None = None
    provides: tuple[str, ...] = ()  # by-name loads it answers (mlfreeze_runtime.names)
    revision: str = ""  # the pinned hub revision of an hf-hub model
    derived_from: dict[str, str] = field(default_factory=dict)  # artifact name -> "<id>@<weights sha256>"

    @property
    def source(self) -> str:
        """The pinned source of the model's ONNX towers (``"<id>@<weights sha256>"``), "" when none."""
        return next(iter(sorted(set(self.derived_from.values()))), "")

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    def file_paths(self) -> dict[str, Path]:
        """Artifact name -> absolute path."""
        return {name: self.root / rel for name, rel in self.files.items()}

    def golden_path(self) -> Path | None:
        return None if self.golden is None else self.root / self.golden

    def missing_files(self) -> list[str]:
        """``name (relpath)`` for every listed file that does not exist."""
        return [f"{n!r} ({rel})" for n, rel in self.files.items() if not (self.root / rel).exists()]

    def weights_path(self) -> Path:
        """The CLIP checkpoint: the file whose role is ``weights``, else the one weights-like file."""
        named = [n for n, r in self.roles.items() if r == "weights" and n in self.files]
        if not named and "weights" in self.files:
            named = ["weights"]
        if not named:
            named = [n for n, rel in sorted(self.files.items()) if rel.endswith(WEIGHT_SUFFIXES)]
        if len(named) != 1:
            raise ModelIndexError(f"model {self.id!r} in {self.root / INDEX}: expected exactly one weights file "
                                  f"({', '.join(WEIGHT_SUFFIXES)}), found {sorted(named) or 'none'}: {FIX}")
        return self.path(self.files[named[0]])

    def config_path(self) -> Path | None:
        """The open_clip config artifact: ``config`` when set, else the file whose role is ``config``,
        else the first ``.json`` among ``files`` that holds an open_clip config (``model_cfg``, or
        ``embed_dim`` + ``vision_cfg`` + ``text_cfg``); None when the architecture is open_clip's own."""
        if self.config:
            return self.path(self.config)
        named = [n for n, r in self.roles.items() if r == "config" and n in self.files]
        if named:
            return self.path(self.files[named[0]])
        for _, rel in sorted(self.files.items()):
            if rel.endswith(".json") and _looks_like_clip_config(self.path(rel)):
                return self.path(rel)
        return None

    def onnx_files(self) -> list[Path]:
        """Every ``.onnx`` file the model lists (folders listed are searched), sorted."""
        found: list[Path] = []
        for _, rel in sorted(self.files.items()):
            p = self.path(rel)
            if p.is_dir():
                found.extend(sorted(p.rglob("*.onnx")))
            elif p.suffix == ".onnx":
                found.append(p)
        return found

    def fingerprint(self) -> str:
        """sha256 over the sorted ``relpath:sha256`` lines of the model's files (recorded hashes;
        a file is hashed only where none is recorded)."""
        lines = []
        for rel in sorted(set(self.files.values())):
            p = self.path(rel)
            if p.is_dir():
                for f in sorted(q for q in p.rglob("*") if q.is_file()):
                    r = f.relative_to(self.root).as_posix()
                    lines.append(f"{r}:{self.sha256.get(r) or file_sha256(f)}")
            else:
                lines.append(f"{rel}:{self.sha256.get(rel) or file_sha256(p)}")
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "arch": self.arch, "embed_dim": self.embed_dim,
                "files": dict(self.files), "provides": list(self.provides)}


@dataclass(frozen=True, kw_only=True)
class ModelIndex:
    """A read ``models.json``: the folder, the set name, the providers the profile expects, the models."""

    directory: Path
    set_name: str
    expected_providers: tuple[str, ...]
    models: tuple[ModelEntry, ...]
    document: dict[str, Any]

    def first(self, kind: str) -> ModelEntry | None:
        return next((m for m in self.models if m.kind == kind), None)


def _looks_like_clip_config(path: Path) -> bool:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(raw, dict) and (isinstance(raw.get("model_cfg"), dict)
                                      or all(k in raw for k in ("embed_dim", "vision_cfg", "text_cfg")))


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, cached per (path, size, mtime)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def _inside(value: str, where: str) -> str:
    p = PurePosixPath(value.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value):
        raise ModelIndexError(f"{where}: {value!r} must be a path inside the models folder")
    return p.as_posix()


def parse_index(doc: Any, directory: Path, *, check_files: bool = True, source: str | None = None) -> ModelIndex:
    """Validate a decoded models.json document; ``source`` names it in messages."""
    src = source or str(directory / INDEX)
    errors = schema_errors(doc)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ModelIndexError(f"{src}: {errors[0]}{more}: rewrite it with `mlfreeze freeze`, or fix it by hand "
                              "(schema: docs/models-index.schema.json)")
    entries = []
    for raw in doc["models"]:
        where = f"{src}: model {raw['id']!r}"
        if raw["kind"] == "clip" and not raw.get("arch"):
            raise ModelIndexError(f"{where}: a clip model needs 'arch' (the open_clip architecture name)")
        files = {str(k): _inside(v, f"{where}.files.{k}") for k, v in raw["files"].items()}
        config = _inside(raw["config"], f"{where}.config") if "config" in raw else None
        golden = _inside(raw["golden"], f"{where}.golden") if "golden" in raw else None
        entry = ModelEntry(id=raw["id"], kind=raw["kind"], embed_dim=raw["embed_dim"], root=directory, files=files,
                           sha256={str(k): str(v).lower() for k, v in raw.get("sha256", {}).items()},
                           roles=dict(raw.get("roles", {})), verify=dict(raw.get("verify", {})),
                           arch=raw.get("arch") or None, config=config, golden=golden,
                           provides=tuple(raw.get("provides", ())), revision=str(raw.get("revision", "")),
                           derived_from={str(k): str(v) for k, v in raw.get("derived_from", {}).items()})
        if check_files:
            missing = entry.missing_files()
            if config is not None and not (directory / config).is_file():
                missing.append(f"config {config!r}")
            if missing:
                raise ModelIndexError(f"{where}: file {', '.join(missing)} is missing from {directory}: {FIX}")
        entries.append(entry)
    ids = [e.id for e in entries]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ModelIndexError(f"{src}: duplicate model ids {', '.join(dupes)}: give each model its own id")
    names = [n for e in entries for n in e.provides]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ModelIndexError(f"{src}: {twice[0]!r} is provided by two models: each by-name load must resolve to one")
    return ModelIndex(directory=directory, set_name=str(doc.get("set", "")),
                      expected_providers=tuple(doc.get("expected_providers", ())), models=tuple(entries),
                      document=doc)


def read_models_index(models_dir: Path | str, *, check_files: bool = True) -> ModelIndex:
    """Read and validate ``<models_dir>/models.json``.

    Raises :class:`ModelsDirMissing` when the folder does not exist, :class:`ModelIndexError`
    when models.json is absent, not JSON, breaks the schema or (``check_files``) lists a file
    that is not there. The self-test passes ``check_files=False``: a missing file is then a
    failed check of that model rather than an unreadable index.
    """
    base = Path(models_dir)
    if not base.is_dir():
        raise ModelsDirMissing(f"models not found: models folder {base} does not exist: {FIX}")
    path = base / INDEX
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelIndexError(f"{path} is missing (is {base} a bundle's models folder?): {FIX}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelIndexError(f"{path} is not valid JSON ({exc}): {FIX}") from None
    return parse_index(doc, base, check_files=check_files)


def write_models_index(dest_models_dir: Path | str, entries: Sequence[Mapping[str, Any]], *, set_name: str,
                       expected_providers: Sequence[str] = (), goldens_dir: Path | str | None = None) -> Path:
    """Write ``<dest>/models.json`` atomically; copy ``<goldens_dir>/<id>.json`` to ``<id>/golden.json``.

    Each entry needs ``id, kind, arch, embed_dim, files`` (name -> path relative to the models
    folder) and may carry ``sha256``, ``roles`` and ``verify``. The document is validated with
    :func:`parse_index` before it is written, so the freezer can never write what the app refuses.
    """
    dest = Path(dest_models_dir)
    dest.mkdir(parents=True, exist_ok=True)
    models = []
    for e in entries:
        missing = [k for k in ("id", "kind", "arch", "embed_dim", "files") if k not in e]
        if missing:
            raise ModelIndexError(f"models.json entry {e.get('id', '?')}: missing {', '.join(missing)}")
        item: dict[str, Any] = {k: e[k] for k in ("id", "kind", "embed_dim")}
        item["arch"] = str(e["arch"] or "")  # an insightface pack has none
        item["files"] = {str(k): str(v) for k, v in e["files"].items()}
        item["sha256"] = dict(e.get("sha256", {}))
        item["roles"] = dict(e.get("roles", {}))
        if e.get("derived_from"):
            item["derived_from"] = dict(e["derived_from"])
        item["verify"] = dict(e.get("verify", {}))
        if e.get("provides"):
            item["provides"] = [str(n) for n in e["provides"]]
        if e.get("revision"):
            item["revision"] = str(e["revision"])
        if goldens_dir is not None and (Path(goldens_dir) / f"{e['id']}.json").is_file():
            target = dest / str(e["id"]) / "golden.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(goldens_dir) / f"{e['id']}.json", target)
            item["golden"] = f"{e['id']}/golden.json"
        models.append(item)
    doc = {"schema_version": SCHEMA_VERSION, "set": set_name, "expected_providers": list(expected_providers),
           "models": models}
    parse_index(doc, dest, check_files=False, source=f"models.json for {dest}")
    path = dest / INDEX
    tmp = dest / f".{INDEX}.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def find_models_dir(explicit: str | Path | None = None) -> tuple[Path | None, str]:
    """``(folder or None, source)``: the models folder this process should use and why.

    ``source`` is ``argument`` (``explicit`` given), ``frozen`` (the bundle's runtime hook set
    ``MLFREEZE_MODELS_DIR``, or it is unset and this is a frozen executable: ``models/`` beside
    it), ``MLFREEZE_MODELS_DIR`` (the user set it) or ``none``.
    """
    if explicit:
        return Path(explicit).expanduser().resolve(), "argument"
    env = os.environ.get(MODELS_ENV)
    if env:
        source = "frozen" if os.environ.get(FROZEN_MARK_ENV) == env else MODELS_ENV
        return Path(env).expanduser().resolve(), source
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve().parent / "models", "frozen"
    return None, "none"
