# Libraries loaded with dlopen at run time (NVRTC's builtins, cuDNN's sub-libraries,
# onnxruntime's execution providers): PyInstaller's dependency scan reads DT_NEEDED only, so it
# misses them. They are data per profile (`[closure] dlopen` in src/mlfreeze/platforms/<p>.toml); freeze passes
# the entries that apply to the flavor in the spec parameters as "dlopen". Each is collected from
# beside the library that loads it (`by`, a path relative to site-packages) into `at` under
# _internal/. mlfreeze_runtime.device is in every bundle, so this hook runs for every build; a
# spec without the key collects nothing. `mlfreeze audit` checks the result (mlfreeze.bundle.closure).
import glob
import json
import os
import sys
from typing import Any

from PyInstaller.utils.hooks import logger


def _entries() -> list[dict[str, Any]]:
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MLFREEZE_SPEC_PARAMS", "")
    if not path or not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        entries: list[dict[str, Any]] = json.load(f).get("dlopen", [])
    return entries


def _collect(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    roots = [p for p in sys.path if p and os.path.isdir(p)]
    for entry in entries:
        found = None
        for root in roots:
            for loader in sorted(glob.glob(os.path.join(root, entry["by"]))):
                # beside its loader, else where `at` says under site-packages (the bundle mirrors it)
                places = [] if entry.get("preload") else [os.path.dirname(loader)]
                for place in [*places, os.path.join(root, entry["at"])]:
                    candidate = os.path.normpath(os.path.join(place, entry["lib"]))
                    if os.path.isfile(candidate):
                        found = candidate
                        break
                if found:
                    break
            if found:
                break
        if found is None:
            logger.warning("hook-mlfreeze_runtime.device: %s (loaded by %s) not found %s; "
                           "`mlfreeze audit` will report it", entry["lib"], entry["by"],
                           "in " + entry["at"] if entry.get("preload") else "beside it")
            continue
        out.append((found, entry["at"]))
    return out


binaries = _collect(_entries())
