# mlfreeze's runtime package goes into every bundle, whatever the project's layout: the device
# layer, the models.json reader and the model loaders. Its ML imports are lazy (inside
# functions), so import analysis alone would miss most of it.
#
# Two subpackages stay out of this collection: mlfreeze_runtime.verify (full and slim get it
# through their self-test's hidden import, hook-mlfreeze_runtime.verify.py; lite excludes it)
# and mlfreeze_runtime.update (only <app>-update's own Analysis imports it,
# hook-mlfreeze_runtime.update.py), so neither the self-test nor tuf/cryptography leak into an
# app's Analysis and lite logs no "hidden import not found" for an excluded package.
#
# A lite bundle (hooksconfig {"mlfreeze_runtime": {"ml": false}}, src/mlfreeze/specs/lite.spec)
# also leaves the ML loaders (ML_ONLY) and the tokenizer vocabulary to the app: they are collected
# only when the app imports them. Their lazy imports of numpy, Pillow, ftfy and regex would
# otherwise put those into every lite bundle, whether the app uses them or not.
from typing import Any

from PyInstaller.utils.hooks import collect_data_files, collect_submodules, get_hook_config

SEPARATE = ("mlfreeze_runtime.verify", "mlfreeze_runtime.update")
ML_ONLY = ("mlfreeze_runtime.clip", "mlfreeze_runtime.faces", "mlfreeze_runtime.onnx_clip",
           "mlfreeze_runtime.preprocess_np", "mlfreeze_runtime.tokenizer", "mlfreeze_runtime.data")


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def hook(hook_api: Any) -> None:  # PyInstaller's PostGraphAPI
    skip = SEPARATE + (ML_ONLY if get_hook_config(hook_api, "mlfreeze_runtime", "ml") is False else ())
    hook_api.add_imports(*collect_submodules("mlfreeze_runtime", filter=lambda n: not _under(n, skip)))
    hook_api.add_datas([d for d in collect_data_files("mlfreeze_runtime")
                        if not _under(d[1].replace("\\", "/").replace("/", "."), skip)])
