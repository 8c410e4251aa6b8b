"""Platform profiles (``src/mlfreeze/platforms/*.toml``, installed as ``mlfreeze.platforms``) and their loader.

The runtime device layer that bundles ship lives in ``mlfreeze_runtime.device``.
"""
