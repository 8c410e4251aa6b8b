# OpenAI's CLIP package (`import clip`, e.g. clip-anytorch): its tokenizer reads
# bpe_simple_vocab_16e6.txt.gz beside its modules. In a bundle `clip.load(name)` resolves to the
# manifest's model that provides "clip:<name>" (mlfreeze_runtime.names), never a download.
from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("clip", includes=["*.txt.gz"])
module_collection_mode = "pyz+py"  # TorchScript of its model classes reads their source
# clip.load(name) in a bundle builds OpenAI's CLIP from the manifest's weights (mlfreeze_runtime.names),
# a .safetensors file through safetensors.torch: the app never imports it itself.
hiddenimports = ["safetensors.torch"]
