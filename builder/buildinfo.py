"""BUILD-INFO.json: what a bundle is and how it was made (docs/architecture.md "Bundle outputs")."""

from __future__ import annotations

import importlib.util
import json
import platform as _platform
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlfreeze import proc

SCHEMA_VERSION = 1
FILE_NAME = "BUILD-INFO.json"
# distributions recorded by name in "distributions" (the rest is in the incremental stamp)
KEY_DISTRIBUTIONS = ("torch", "torchvision", "open-clip-torch", "insightface", "onnxruntime", "onnxruntime-gpu",
                     "onnxruntime-directml", "faiss-cpu", "faiss-gpu", "numpy", "pillow", "opencv-python-headless",
                     "scikit-image", "pyinstaller", "pyinstaller-hooks-contrib")


def git_commit(root: Path) -> str | None:
    try:
        done = proc.capture(["git", "rev-parse", "HEAD"], cwd=root)
    except OSError:
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and len(sha) == 40 else None


def torch_facts(distributions: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(torch version with its local tag, CUDA version it was built for), without importing torch.

    The distribution metadata drops the local tag (``2.14.1``, not ``2.14.1+cu130``), so
    ``torch/version.py`` is read as text; the metadata version is the fallback.
    """
    version = distributions.get("torch")
    if version is None:
        return None, None
    spec = importlib.util.find_spec("torch")
    if spec is not None and spec.origin:
        text = (Path(spec.origin).parent / "version.py")
        if text.is_file():
            return parse_torch_version_py(text.read_text(encoding="utf-8"), version)
    return version, None


def parse_torch_version_py(text: str, fallback: str) -> tuple[str, str | None]:
    found = dict(re.findall(r"^(__version__|cuda)\b[^=]*=\s*'([^']*)'", text, re.M))
    return found.get("__version__", fallback), found.get("cuda") or None


def onnxruntime_fact(distributions: Mapping[str, str]) -> str | None:
    for name in ("onnxruntime-gpu", "onnxruntime-directml", "onnxruntime"):
        if name in distributions:
            return f"{name} {distributions[name]}"
    return None


def build_info(*, app: str, version: str, platform: str, accelerator: str, flavor: str, archive_format: str,
               distributions: Mapping[str, str], model_set: str | None, models: Sequence[Mapping[str, Any]],
               verification: Mapping[str, Any] | None, selftest: Mapping[str, Any] | None,
               prune: Sequence[Mapping[str, Any]], git_commit: str | None, inputs_sha256: str,
               built_at: datetime | None = None, lock_sha256: str | None = None) -> dict[str, Any]:
    """The BUILD-INFO document (pure: every fact is passed in)."""
    torch, cuda = torch_facts(distributions) if flavor == "full" else (None, None)
    return {
        "schema_version": SCHEMA_VERSION,
        "app": app,
        "version": version,
        "platform": platform,
        "accelerator": accelerator,
        "flavor": flavor,
        "archive_format": archive_format,
        "python": _platform.python_version(),
        "torch": torch,
        "cuda": cuda,
        "onnxruntime": onnxruntime_fact(distributions) if flavor == "full" else None,
        "distributions": {k: distributions[k] for k in KEY_DISTRIBUTIONS
                          if k in distributions and (flavor == "full" or k.startswith("pyinstaller"))},
        "model_set": model_set if flavor == "full" else None,
        "models": list(models),
        "verification": dict(verification) if verification is not None else None,
        "selftest": dict(selftest) if selftest is not None else None,
        "prune": list(prune),
        "git_commit": git_commit,
        "inputs_sha256": inputs_sha256,
        "lock_sha256": lock_sha256,  # sha256 of the locks/<profile>.txt the environment was installed from
        "built_at": (built_at or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
    }


def write(bundle: Path, info: Mapping[str, Any]) -> Path:
    path = bundle / FILE_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / FILE_NAME).read_text(encoding="utf-8"))  # type: ignore[no-any-return]
