# Runtime hook (runs before the app): point the app and the self-test at the bundle's models/
# unless the user chose another directory with MLFREEZE_MODELS_DIR.
import os
import sys

_models = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "models")
if not os.environ.get("MLFREEZE_MODELS_DIR") and os.path.isdir(_models):
    os.environ["MLFREEZE_MODELS_DIR"] = _models
del _models
