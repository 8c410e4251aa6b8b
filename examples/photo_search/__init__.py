"""photo-search: the example app mlfreeze builds by default.

Search a folder of photos by text (CLIP) and find the faces in them (InsightFace), with
a FAISS index on disk. Without the ML stack (the lite bundle) it still indexes and
searches by file name. Only the standard library is imported at module level anywhere
in this package; the ML stack is imported inside functions.
"""

from __future__ import annotations

APP_NAME = "photo-search"
__version__ = "0.1.0"
