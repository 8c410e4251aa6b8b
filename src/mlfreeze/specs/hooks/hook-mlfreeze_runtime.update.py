# The updater (<app>-update): only its own Analysis (src/mlfreeze/specs/update_entry.py) imports
# mlfreeze_runtime.update, so tuf and securesystemslib (the signature checks of the release
# metadata) are collected there and never into the app's Analysis. pyca/cryptography is excluded
# from that Analysis (mlfreeze.bundle.freeze.UPDATER_EXCLUDES): securesystemslib then verifies ed25519
# signatures with its own pure-Python code. truststore (the machine's CA store) and certifi (the
# fallback bundle, with its cacert.pem through PyInstaller's own certifi hook) serve its HTTPS.
from PyInstaller.utils.hooks import collect_submodules

hiddenimports = collect_submodules("mlfreeze_runtime.update") + [
    "tuf.ngclient",
    "tuf.api.exceptions",
    "securesystemslib.signer",
    "truststore",
    "certifi",
]
