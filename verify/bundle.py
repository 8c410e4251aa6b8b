"""A bundle's ``models/`` folder: the ``models.json`` index the freezer writes and the self-test reads.

``models/models.json``::

    {"schema_version": 1, "set": "demo", "expected_providers": ["CPUExecutionProvider"],
     "models": [{"id": "demo-clip", "kind": "clip", "arch": "mlfreeze-demo-clip", "embed_dim": 64,
                 "files": {"demo_clip.safetensors": "demo-clip/demo_clip.safetensors", ...},
                 "sha256": {"demo-clip/demo_clip.safetensors": "<hex>", ...},
                 "roles": {"demo_clip.safetensors": "weights", ...},
                 "verify": {...the [models.<id>.verify] table...},
                 "golden": "demo-clip/golden.json"}]}

Paths are relative to ``models/``. Probe images live in ``models/_probes/``
(:func:`verify.probes.copy_probe_inputs`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlfreeze_runtime.verify.result import ModelRef

SCHEMA_VERSION = 1
INDEX = "models.json"
REQUIRED = ("id", "kind", "arch", "embed_dim", "files")


class IndexError_(ValueError):
    """models.json is missing or malformed."""


def write_models_index(dest_models_dir: Path | str, entries: Sequence[Mapping[str, Any]], *, set_name: str,
                       expected_providers: Sequence[str] = (), goldens_dir: Path | str | None = None) -> Path:
    """Write ``models.json``; copy ``<goldens_dir>/<id>.json`` to ``<id>/golden.json`` where it exists.

    Each entry needs ``id, kind, arch, embed_dim, files`` (name -> path relative to the models
    dir) and may carry ``sha256``, ``roles`` and ``verify``.
    """
    dest = Path(dest_models_dir)
    dest.mkdir(parents=True, exist_ok=True)
    models = []
    for e in entries:
        missing = [k for k in REQUIRED if k not in e]
        if missing:
            raise IndexError_(f"models.json entry {e.get('id', '?')}: missing {', '.join(missing)}")
        item = {k: e[k] for k in REQUIRED}
        item["files"] = {str(k): str(v) for k, v in e["files"].items()}
        item["sha256"] = dict(e.get("sha256", {}))
        item["roles"] = dict(e.get("roles", {}))
        item["verify"] = dict(e.get("verify", {}))
        if goldens_dir is not None and (Path(goldens_dir) / f"{e['id']}.json").is_file():
            target = dest / str(e["id"]) / "golden.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(goldens_dir) / f"{e['id']}.json", target)
            item["golden"] = f"{e['id']}/golden.json"
        models.append(item)
    doc = {"schema_version": SCHEMA_VERSION, "set": set_name, "expected_providers": list(expected_providers),
           "models": models}
    path = dest / INDEX
    tmp = dest / f".{INDEX}.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return path


def read_models_index(models_dir: Path | str) -> tuple[dict[str, Any], list[ModelRef]]:
    """The index document and one :class:`ModelRef` per model, with absolute paths."""
    base = Path(models_dir)
    path = base / INDEX
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise IndexError_(f"{path} is missing (is {base} a bundle's models folder?)") from None
    except ValueError as exc:
        raise IndexError_(f"{path}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION or \
            not isinstance(doc.get("models"), list):
        raise IndexError_(f"{path}: not a models index of schema_version {SCHEMA_VERSION}")
    refs = []
    for i, m in enumerate(doc["models"]):
        missing = [k for k in REQUIRED if k not in m]
        if missing:
            raise IndexError_(f"{path}: models[{i}] lacks {', '.join(missing)}")
        refs.append(ModelRef(id=m["id"], kind=m["kind"], arch=m["arch"], embed_dim=int(m["embed_dim"]),
                             files={n: base / rel for n, rel in m["files"].items()}, verify=m.get("verify", {}),
                             golden=(base / m["golden"]) if m.get("golden") else None,
                             roles=m.get("roles", {})))
    return doc, refs
