# mlfreeze's runtime package goes into every bundle, whatever the project's layout: the device
# layer, the models.json reader and the model loaders. Its ML imports are lazy (inside
# functions), so import analysis alone would miss most of it.
#
# Two subpackages stay out of this collection: mlfreeze_runtime.verify (full and slim get it
# through their self-test's hidden import, hook-mlfreeze_runtime.verify.py; lite excludes it)
# and mlfreeze_runtime.update (only <app>-update's own Analysis imports it,
# hook-mlfreeze_runtime.update.py), so neither the self-test nor tuf/cryptography leak into an
# app's Analysis and lite logs no "hidden import not found" for an excluded package.
from PyInstaller.utils.hooks import collect_data_files, collect_submodules

SEPARATE = ("mlfreeze_runtime.verify", "mlfreeze_runtime.update")


def _shared(name: str) -> bool:
    return not any(name == p or name.startswith(p + ".") for p in SEPARATE)


hiddenimports = collect_submodules("mlfreeze_runtime", filter=_shared)
datas = [d for d in collect_data_files("mlfreeze_runtime")
         if not any(d[1].replace("\\", "/").startswith(p.replace(".", "/")) for p in SEPARATE)]
