"""Model manifests, PyInstaller specs and hooks (data for the builder)."""
