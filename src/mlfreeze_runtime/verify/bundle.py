"""A bundle's ``models/`` folder for the checks: :mod:`mlfreeze_runtime.modelindex` (the one
reader and writer of ``models.json``) with each model as a :class:`ModelRef`.

Probe images live in ``models/_probes/`` (:func:`mlfreeze_runtime.verify.probes.copy_probe_inputs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlfreeze_runtime.modelindex import INDEX, SCHEMA_VERSION, ModelEntry, ModelIndexError, write_models_index
from mlfreeze_runtime.verify.result import ModelRef

IndexError_ = ModelIndexError  # the name this module used before the reader moved

__all__ = ["INDEX", "SCHEMA_VERSION", "IndexError_", "model_ref", "read_models_index", "write_models_index"]


def model_ref(entry: ModelEntry) -> ModelRef:
    """The gate's view of one models.json entry (absolute paths)."""
    return ModelRef(id=entry.id, kind=entry.kind, arch=entry.arch or "", embed_dim=entry.embed_dim,
                    files=entry.file_paths(), verify=dict(entry.verify), golden=entry.golden_path(),
                    roles=dict(entry.roles), provides=tuple(entry.provides), revision=entry.revision,
                    derived_from=entry.source)


def read_models_index(models_dir: Path | str) -> tuple[dict[str, Any], list[ModelRef]]:
    """The index document and one :class:`ModelRef` per model. Listed files are not required to
    exist: a missing one is the gate's ``files`` check failing, not an unreadable index."""
    from mlfreeze_runtime.modelindex import read_models_index as read

    index = read(models_dir, check_files=False)
    return index.document, [model_ref(m) for m in index.models]
