# faiss.loader picks its SWIG module at run time (swigfaiss_avx512_spr / _avx512 / _avx2 /
# swigfaiss) and silently falls back to the generic one when the optimised module is missing.
# Collect every variant the installed wheel ships, and their shared libraries.
from PyInstaller.utils.hooks import collect_dynamic_libs, collect_submodules

hiddenimports = collect_submodules(
    "faiss", filter=lambda name: name.split(".")[-1].lstrip("_").startswith("swigfaiss") or name == "faiss.loader"
)
binaries = collect_dynamic_libs("faiss")
