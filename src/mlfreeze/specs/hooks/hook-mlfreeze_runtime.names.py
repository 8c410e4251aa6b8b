# mlfreeze_runtime.names (by-name model loads) is imported by a runtime hook of every bundle
# (rthook_models_by_name.py), lite included. Its patches run only once the app imports open_clip,
# OpenAI's clip or insightface, and import what they use inside functions: the runtime's CLIP and
# face loaders, torch, clip.model, safetensors. PyInstaller follows function-level imports all the
# same, so without this every bundle would carry them, whether the app uses them or not: a lite
# bundle numpy and Pillow (through the loaders and clip.model), any bundle OpenAI's clip package
# when it happens to be installed.
#
# excludedimports drops only these edges from mlfreeze_runtime.names: what the app imports itself
# still comes in, the runtime's loaders come with full and slim (hook-mlfreeze_runtime.py), and
# safetensors with OpenAI's clip (hook-clip.py), whose by-name patch reads safetensors weights.
excludedimports = ["mlfreeze_runtime.clip", "mlfreeze_runtime.faces", "torch", "open_clip", "clip",
                   "insightface", "safetensors"]
