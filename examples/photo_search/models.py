"""Where the models are and what ``models.json`` says about them: the runtime's reader.

``mlfreeze_runtime.modelindex`` is the one reader of ``models.json`` (schema:
docs/models-index.schema.json); this module maps its errors onto the app's exit codes. The
models dir is ``$MLFREEZE_MODELS_DIR``, else ``models/`` beside a frozen executable, else none
(development without models: ML features say "models not found"). Reading a models folder also
points the app's by-name model loads at it (``mlfreeze_runtime.names.install``).
"""

from __future__ import annotations

from pathlib import Path

from mlfreeze_runtime.modelindex import (
    INDEX as MODELS_JSON,
)
from mlfreeze_runtime.modelindex import (
    MODELS_ENV,
    ModelEntry,
    ModelIndexError,
    ModelsDirMissing,
    file_sha256,
    find_models_dir,
    read_models_index,
)
from mlfreeze_runtime.modelindex import (
    ModelIndex as ModelSet,
)
from photo_search.errors import ModelsError, ModelsNotFound

__all__ = ["MODELS_ENV", "MODELS_JSON", "ModelEntry", "ModelSet", "file_sha256", "find_models_dir",
           "load_model_set", "locate_model_set"]


def load_model_set(directory: Path) -> ModelSet:
    """Read and validate ``directory/models.json``; ``ModelsNotFound`` (exit 3) when the folder does
    not exist, ``ModelsError`` (exit 2) for any other problem, each one line."""
    try:
        index = read_models_index(directory)
    except ModelsDirMissing as exc:
        raise ModelsNotFound(str(exc)) from None
    except ModelIndexError as exc:
        raise ModelsError(str(exc)) from None
    # The by-name loads of embed.py (open_clip "ViT-B-32"/"openai", FaceAnalysis "buffalo_l") resolve to
    # this folder's models, offline. A bundle's runtime hook has done this already; it matters when the
    # app runs unfrozen with MLFREEZE_MODELS_DIR set.
    from mlfreeze_runtime import names

    names.install(models_dir=index.directory)
    return index


def locate_model_set() -> ModelSet:
    """The model set this process should use.

    ``ModelsNotFound`` (exit 3) when there is no models dir; ``ModelsError`` (exit 2) when
    there is one but its models.json is bad."""
    directory, _ = find_models_dir()
    if directory is None:
        raise ModelsNotFound(f"models not found: set {MODELS_ENV} to a models dir (one holding {MODELS_JSON})")
    return load_model_set(directory)
