"""``photo-search --health``: what this installation can do, as one JSON object.

Keys: app, version, python, frozen, executable, device (``platforms.device.get_device_info()``,
or ``{"device": "cpu", "note": ...}`` where that layer is not bundled), models_dir,
models_dir_source (MLFREEZE_MODELS_DIR | frozen | none), model_set, models, models_error,
ml_libraries ({module: "ok" | why not}), features ({name_search|clip_search|faces:
{available, reason}}), ml_available (true when CLIP search or faces is usable: the ML
libraries import and models.json has a model for it) and ml_reason (null when every ML
feature is usable, else why each one that is not is not: set even when ml_available is
true but one feature is missing).
"""

from __future__ import annotations

import platform
import sys
from typing import Any

from photo_search import APP_NAME, __version__
from photo_search.embed import CLIP_MODULES, FACE_MODULES, INDEX_MODULES, import_errors
from photo_search.errors import AppError
from photo_search.models import ModelSet, find_models_dir, load_model_set


def device_info() -> dict[str, Any]:
    try:
        from mlfreeze_runtime.device import get_device_info
    except ImportError as exc:
        return {"device": "cpu", "note": f"mlfreeze_runtime.device unavailable ({exc}); assuming cpu"}
    try:
        return dict(get_device_info())
    except Exception as exc:  # a bad DEVICE value must not break the health report
        return {"device": None, "error": f"{type(exc).__name__}: {exc}"}


def _feature(missing: dict[str, str], model_ok: bool, model_reason: str) -> dict[str, Any]:
    if missing:
        return {"available": False, "reason": "cannot import " + ", ".join(f"{m} ({e})" for m, e in missing.items())}
    if not model_ok:
        return {"available": False, "reason": model_reason}
    return {"available": True, "reason": None}


def report() -> dict[str, Any]:
    directory, source = find_models_dir()
    model_set: ModelSet | None = None
    models_error = None
    if directory is None:
        models_error = "models not found: MLFREEZE_MODELS_DIR is not set and this is not a frozen bundle"
    else:
        try:
            model_set = load_model_set(directory)
        except AppError as exc:
            models_error = exc.message

    modules = tuple(dict.fromkeys(CLIP_MODULES + INDEX_MODULES + FACE_MODULES))
    errors = import_errors(modules)
    clip = model_set.first("clip") if model_set else None
    faces = model_set.first("insightface") if model_set else None
    features = {
        "name_search": {"available": True, "reason": None},
        "clip_search": _feature({m: errors[m] for m in CLIP_MODULES + INDEX_MODULES if m in errors},
                                clip is not None, models_error or "no clip model in models.json"),
        "faces": _feature({m: errors[m] for m in FACE_MODULES if m in errors},
                          faces is not None, models_error or "no insightface model in models.json"),
    }
    ml_ok = features["clip_search"]["available"] or features["faces"]["available"]
    reasons = [f"{name}: {f['reason']}" for name, f in features.items() if not f["available"]]
    return {
        "app": APP_NAME,
        "version": __version__,
        "python": platform.python_version(),
        "frozen": bool(getattr(sys, "frozen", False)),
        "executable": sys.executable,
        "device": device_info(),
        "models_dir": None if directory is None else str(directory),
        "models_dir_source": source,
        "model_set": model_set.set_name if model_set else None,
        "models": [m.describe() for m in model_set.models] if model_set else [],
        "models_error": models_error,
        "ml_libraries": {m: errors.get(m, "ok") for m in modules},
        "features": features,
        "ml_available": ml_ok,
        "ml_reason": "; ".join(reasons) or None,
    }
