"""``photo-search --health``: what this installation can do, as one JSON object.

Built by ``mlfreeze_runtime.app.health`` (the documented keys: app, version, python, frozen,
executable, device, models_dir, models_dir_source (``frozen`` | ``MLFREEZE_MODELS_DIR`` | ``none``),
model_set, models, models_error, features, ml_available, ml_reason) plus ``ml_libraries``
({module: "ok" | why not}). Features: name_search (always), clip_search, faces; ml_available is
true when CLIP search or faces is usable (the ML libraries import and models.json has a model for
it); ml_reason is null when every feature is usable, else why each one that is not is not.
"""

from __future__ import annotations

from typing import Any

from mlfreeze_runtime.app import health, models_status
from photo_search import APP_NAME, __version__
from photo_search.embed import CLIP_MODULES, FACE_MODULES, INDEX_MODULES, import_errors


def _feature(missing: dict[str, str], model_ok: bool, model_reason: str) -> dict[str, Any]:
    if missing:
        return {"available": False, "reason": "cannot import " + ", ".join(f"{m} ({e})" for m, e in missing.items())}
    if not model_ok:
        return {"available": False, "reason": model_reason}
    return {"available": True, "reason": None}


def report() -> dict[str, Any]:
    status = models_status()
    index, models_error = status["index"], status["models_error"]
    modules = tuple(dict.fromkeys(CLIP_MODULES + INDEX_MODULES + FACE_MODULES))
    errors = import_errors(modules)
    clip = index.first("clip") if index else None
    faces = index.first("insightface") if index else None
    features = {
        "name_search": {"available": True, "reason": None},
        "clip_search": _feature({m: errors[m] for m in CLIP_MODULES + INDEX_MODULES if m in errors},
                                clip is not None, models_error or "no clip model in models.json"),
        "faces": _feature({m: errors[m] for m in FACE_MODULES if m in errors},
                          faces is not None, models_error or "no insightface model in models.json"),
    }
    return health(app=APP_NAME, version=__version__, features=features, ml_features=("clip_search", "faces"),
                  status=status, extra={"ml_libraries": {m: errors.get(m, "ok") for m in modules}})
