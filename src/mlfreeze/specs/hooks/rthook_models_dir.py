# Runtime hook (runs before the app): point the app and the self-test at the bundle's models/
# unless the user chose another directory with MLFREEZE_MODELS_DIR. A bundle installed by
# <app>-update (<root>/versions/<name>/) prefers the model pack <root>/models/current when one
# was installed with `<app>-update models`. It also records the value it set in
# MLFREEZE_MODELS_DIR_FROZEN, so --health reports models_dir_source "frozen" for the bundle's own
# folder and "MLFREEZE_MODELS_DIR" only for a folder the user chose
# (mlfreeze_runtime.modelindex.find_models_dir). Both variables reach child processes, so the
# app the self-test starts sees the same folder and the same source.
import os
import sys

_here = os.path.dirname(os.path.realpath(sys.executable))
_models = os.path.join(_here, "models")
_versions = os.path.dirname(_here)
_pack = os.path.join(os.path.dirname(_versions), "models", "current")
if os.path.basename(_versions) == "versions" and os.path.isdir(_pack):
    _models = _pack
if not os.environ.get("MLFREEZE_MODELS_DIR") and os.path.isdir(_models):
    os.environ["MLFREEZE_MODELS_DIR"] = _models
    os.environ["MLFREEZE_MODELS_DIR_FROZEN"] = _models
del _here, _models, _versions, _pack
