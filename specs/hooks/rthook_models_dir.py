# Runtime hook (runs before the app): point the app and the self-test at the bundle's models/
# unless the user chose another directory with MLFREEZE_MODELS_DIR. It also records the value
# it set in MLFREEZE_MODELS_DIR_FROZEN, so --health reports models_dir_source "frozen" for the
# bundle's own folder and "MLFREEZE_MODELS_DIR" only for a folder the user chose
# (mlfreeze_runtime.modelindex.find_models_dir). Both variables reach child processes, so the
# app the self-test starts sees the same folder and the same source.
import os
import sys

_models = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "models")
if not os.environ.get("MLFREEZE_MODELS_DIR") and os.path.isdir(_models):
    os.environ["MLFREEZE_MODELS_DIR"] = _models
    os.environ["MLFREEZE_MODELS_DIR_FROZEN"] = _models
del _models
