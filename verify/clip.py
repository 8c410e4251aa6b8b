"""Moved to :mod:`mlfreeze_runtime.clip` (the one CLIP loader of app, gate and self-test);
this name stays so existing imports keep working."""

from mlfreeze_runtime.clip import (  # noqa: F401
    INTERPOLATIONS,
    RESIZE_MODES,
    TOKENIZER_VOCAB,
    VOCAB_SHA256,
    ClipEmbedder,
    ClipLoadError,
    LoadedClip,
    build_architecture,
    check_preprocess_cfg,
    load_clip,
    load_entry,
    preprocess_for,
    read_config,
    register_config,
    tokenizer_vocab_path,
)
