# Runtime hook (every bundle, after rthook_models_dir.py): the app's by-name model loads (open_clip
# model names with a pretrained tag, hf-hub: ids, OpenAI clip.load names, insightface model packs)
# resolve to the bundle's pinned, verified files, the Hugging Face hub is forced offline, and a
# name the bundle's models.json does not provide fails with one line instead of a download
# (mlfreeze_runtime.names). Imports no ML library: the patches are applied when the app imports
# open_clip, clip or insightface.
from mlfreeze_runtime import names as _names

_names.install()
del _names
