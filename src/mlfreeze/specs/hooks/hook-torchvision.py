# Replaces the contrib hook (user hooks win): collect torchvision completely. The contrib hook
# names `torchvision._C`, but torchvision >= 0.2x loads its ops from `_C_stable.so` (and
# `image_stable.so`) through torch.ops.load_library, which import analysis never sees; without
# them a frozen app crashed at start with `RuntimeError: operator torchvision::nms does not
# exist`. collect_all takes those libraries, every submodule and the data files.
from PyInstaller.utils.hooks import collect_all

datas, binaries, hiddenimports = collect_all("torchvision")

# torchscript/JIT reads the source files: keep .py beside the byte-code (as the contrib hook does).
module_collection_mode = "pyz+py"
