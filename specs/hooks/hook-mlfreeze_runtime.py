# mlfreeze's runtime package goes into every bundle, whatever the project's layout: the device
# layer, the models.json reader, the model loaders and the self-test. Its ML imports are lazy
# (inside functions), so import analysis alone would miss most of it.
from PyInstaller.utils.hooks import collect_data_files, collect_submodules

hiddenimports = collect_submodules("mlfreeze_runtime")
datas = collect_data_files("mlfreeze_runtime")
