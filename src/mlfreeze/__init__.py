"""mlfreeze: build, verify and release Python ML applications.

Nothing here imports the ML stack; stages import torch, open_clip, insightface
and PyInstaller lazily, inside the function that needs them.
"""

__version__ = "0.1.0"
