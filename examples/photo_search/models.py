"""Where the models are and what ``models.json`` says about them.

Contract (docs/architecture.md, "Models"): the models dir holds ``models.json``::

    {"schema_version": 1, "set": "demo",
     "models": [{"id": "demo-clip", "kind": "clip", "arch": "<open_clip name>", "embed_dim": 64,
                 "files": {"<name>": "<relpath>"}, "sha256": {"<relpath>": "<hex>"},
                 "config": "<relpath of an open_clip model config JSON>"}]}

The models dir is ``$MLFREEZE_MODELS_DIR``, else ``models/`` beside a frozen executable,
else none (development without models: ML features say "models not found").
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photo_search.errors import ModelsError, ModelsNotFound

MODELS_ENV = "MLFREEZE_MODELS_DIR"
MODELS_JSON = "models.json"
SCHEMA_VERSION = 1
KINDS = ("clip", "insightface")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".npz")


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """One model of the set, with its files resolved against the models dir."""

    id: str
    kind: str
    embed_dim: int
    root: Path
    files: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    arch: str | None = None
    config: str | None = None

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    def weights_path(self) -> Path:
        """The CLIP checkpoint: the file named ``weights``, else the first weights-like file."""
        if "weights" in self.files:
            return self.path(self.files["weights"])
        for _, rel in sorted(self.files.items()):
            if rel.endswith(WEIGHT_SUFFIXES):
                return self.path(rel)
        raise ModelsError(f"model {self.id!r} in {self.root / MODELS_JSON} lists no weights file "
                          f"({', '.join(WEIGHT_SUFFIXES)})")

    def onnx_dir(self) -> Path:
        """The folder holding an InsightFace model's ONNX files."""
        onnx: list[Path] = []
        for _, rel in sorted(self.files.items()):
            p = self.path(rel)
            if p.is_dir():
                onnx.extend(sorted(p.rglob("*.onnx")))
            elif p.suffix == ".onnx":
                onnx.append(p)
        if not onnx:
            raise ModelsError(f"model {self.id!r} in {self.root / MODELS_JSON} lists no .onnx files")
        return onnx[0].parent

    def fingerprint(self) -> str:
        """One sha256 over the sorted ``relpath:sha256`` lines of the model's files.

        Uses the hashes recorded in models.json; hashes a file only where none is recorded.
        """
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
                "files": dict(self.files)}


@dataclass(frozen=True, kw_only=True)
class ModelSet:
    directory: Path
    set_name: str
    models: tuple[ModelEntry, ...]

    def first(self, kind: str) -> ModelEntry | None:
        return next((m for m in self.models if m.kind == kind), None)


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def find_models_dir() -> tuple[Path | None, str]:
    """Return ``(dir or None, source)``; source is ``MLFREEZE_MODELS_DIR``, ``frozen`` or ``none``."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env).expanduser().resolve(), MODELS_ENV
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve().parent / "models", "frozen"
    return None, "none"


def _relpath(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ModelsError(f"{where}: expected a relative path string, got {value!r}")
    p = Path(value)
    if p.is_absolute() or ".." in p.parts or value.startswith(("/", "\\")):
        raise ModelsError(f"{where}: {value!r} must be a path inside the models dir")
    return p.as_posix()


def _entry(raw: Any, i: int, root: Path, src: Path) -> ModelEntry:
    where = f"{src}: models[{i}]"
    if not isinstance(raw, dict):
        raise ModelsError(f"{where}: expected an object")
    for key in ("id", "kind", "embed_dim", "files"):
        if key not in raw:
            raise ModelsError(f"{where}: missing key {key!r}")
    mid, kind, dim, files = raw["id"], raw["kind"], raw["embed_dim"], raw["files"]
    if not isinstance(mid, str) or not mid:
        raise ModelsError(f"{where}.id: expected a non-empty string")
    where = f"{src}: model {mid!r}"
    if kind not in KINDS:
        raise ModelsError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        raise ModelsError(f"{where}: embed_dim must be a positive integer, got {dim!r}")
    if not isinstance(files, dict) or not files:
        raise ModelsError(f"{where}: files must be a non-empty object of name -> relpath")
    files = {str(k): _relpath(v, f"{where}.files.{k}") for k, v in files.items()}
    for name, rel in files.items():
        if not (root / rel).exists():
            raise ModelsError(f"{where}: file {name!r} ({rel}) is missing from {root}")
    arch = raw.get("arch")
    if kind == "clip" and (not isinstance(arch, str) or not arch):
        raise ModelsError(f"{where}: a clip model needs 'arch' (the open_clip model name)")
    config = raw.get("config")
    if config is not None:
        config = _relpath(config, f"{where}.config")
        if not (root / config).is_file():
            raise ModelsError(f"{where}: config {config} is missing from {root}")
    sha = raw.get("sha256") or {}
    if not isinstance(sha, dict):
        raise ModelsError(f"{where}: sha256 must be an object of relpath -> hex")
    return ModelEntry(id=mid, kind=kind, embed_dim=dim, root=root, files=files,
                      sha256={str(k): str(v).lower() for k, v in sha.items()},
                      arch=arch if isinstance(arch, str) else None, config=config)


def load_model_set(directory: Path) -> ModelSet:
    """Read and validate ``directory/models.json``; every problem is one ``ModelsError`` line."""
    src = directory / MODELS_JSON
    if not directory.is_dir():
        raise ModelsNotFound(f"models not found: models dir {directory} does not exist")
    if not src.is_file():
        raise ModelsError(f"no {MODELS_JSON} in {directory}")
    try:
        raw = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelsError(f"{src} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ModelsError(f"{src}: expected a JSON object")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ModelsError(f"{src}: schema_version {raw.get('schema_version')!r} is not {SCHEMA_VERSION}")
    models = raw.get("models")
    if not isinstance(models, list):
        raise ModelsError(f"{src}: missing key 'models' (a list)")
    entries = tuple(_entry(m, i, directory, src) for i, m in enumerate(models))
    ids = [e.id for e in entries]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ModelsError(f"{src}: duplicate model ids {', '.join(dupes)}")
    return ModelSet(directory=directory, set_name=str(raw.get("set", "")), models=entries)


def locate_model_set() -> ModelSet:
    """The model set this process should use.

    ``ModelsNotFound`` (exit 3) when there is no models dir; ``ModelsError`` (exit 2) when
    there is one but its models.json is bad."""
    directory, source = find_models_dir()
    if directory is None:
        raise ModelsNotFound(f"models not found: set {MODELS_ENV} to a models dir (one holding {MODELS_JSON})")
    return load_model_set(directory)
