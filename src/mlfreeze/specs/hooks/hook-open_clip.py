# open_clip reads its BPE vocabulary (bpe_simple_vocab_16e6.txt.gz) and model_configs/*.json
# from files beside its modules; PyInstaller's import analysis does not see them.
from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("open_clip", includes=["*.txt.gz", "model_configs/*.json"])

# torch.jit.script (open_clip's own `jit=True`, or an app scripting a model) reads the modules'
# source: keep the .py files beside the byte-code, as hook-torchvision does.
module_collection_mode = "pyz+py"
