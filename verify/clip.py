"""Moved to :mod:`mlfreeze_runtime.clip`, the one CLIP loader of app, gate and self-test.

This name is that same module object (not a copy), so existing imports, and tests that patch
an attribute of it, keep working."""

import sys

from mlfreeze_runtime import clip as _clip

sys.modules[__name__] = _clip
