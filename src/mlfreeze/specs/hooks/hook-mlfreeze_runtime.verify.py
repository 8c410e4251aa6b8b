# The verification checks and the frozen self-test: only bundles whose Analysis imports
# mlfreeze_runtime.verify (full and slim, through <app>-selftest's hidden import) run this hook,
# so lite, which excludes the package, never asks for its modules.
from PyInstaller.utils.hooks import collect_data_files, collect_submodules

hiddenimports = collect_submodules("mlfreeze_runtime.verify")
datas = collect_data_files("mlfreeze_runtime.verify")
