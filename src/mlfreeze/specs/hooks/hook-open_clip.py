# open_clip reads its BPE vocabulary (bpe_simple_vocab_16e6.txt.gz) and model_configs/*.json
# from files beside its modules; PyInstaller's import analysis does not see them.
from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("open_clip", includes=["*.txt.gz", "model_configs/*.json"])
