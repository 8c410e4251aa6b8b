"""BUILD-INFO.json: what a bundle is and how it was made (docs/architecture.md "Bundle outputs").

This module makes the document; reading and validating it (docs/build-info.schema.json) is
``mlfreeze_runtime.buildinfo``, the one reader, shared with the bundle itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import platform as _platform
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlfreeze import _proc as proc
from mlfreeze.errors import ConfigError, VerificationError
from mlfreeze_runtime import buildinfo as _reader
from mlfreeze_runtime.buildinfo import FILE_NAME, SCHEMA_VERSION, BuildInfoError

__all__ = ["FILE_NAME", "SCHEMA_VERSION", "BuildInfoError", "build_info", "read", "write"]
REPORT_IN_BUNDLE = "verify-report.json"  # the flavor's verify report, shipped (and recorded) in the bundle
# distributions recorded by name in "distributions" (the rest is in the incremental stamp)
KEY_DISTRIBUTIONS = ("torch", "torchvision", "open-clip-torch", "insightface", "onnxruntime", "onnxruntime-gpu",
                     "onnxruntime-directml", "faiss-cpu", "faiss-gpu", "numpy", "pillow", "opencv-python-headless",
                     "scikit-image", "pyinstaller", "pyinstaller-hooks-contrib")
# what a slim bundle never holds (src/mlfreeze/specs/slim.spec excludes their modules); lite holds none of the stack
TORCH_DISTRIBUTIONS = ("torch", "torchvision", "open-clip-torch")


def shipped(name: str, flavor: str) -> bool:
    """Whether a key distribution installed in the build environment is in a ``flavor`` bundle."""
    if name.startswith("pyinstaller"):
        return True
    if flavor == "lite":
        return False
    return not (flavor == "slim" and name in TORCH_DISTRIBUTIONS)


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
               record: Mapping[str, Any], unpinned_goldens: Sequence[str] = (),
               built_at: datetime | None = None, lock_sha256: str | None = None,
               update_root: str | None = None, cuda_archs: Sequence[str] = (),
               glibc: Mapping[str, Any] | None = None, signing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The BUILD-INFO document (pure: every fact is passed in; docs/build-info.schema.json).

    ``models``: ``{"id", "kind", "files": {relpath: sha256}, "golden": bool}`` each;
    ``record``: ``{"sha256", "files", "bytes"}`` of the RECORD written just before;
    ``unpinned_goldens``: the opted-out ids (``[tool.mlfreeze] unpinned_goldens``) this bundle holds unpinned;
    ``lock_sha256``: sha256 of the locks/<profile>.txt the build environment was installed from;
    ``update_root``: sha256 of the frozen-in root of trust (update-root.json), None without one;
    ``cuda_archs``: the variant's CUDA compute capabilities (``sm_80``, ...), empty for CPU;
    ``glibc``: mlfreeze.bundle.glibc.record() of a Linux bundle, None elsewhere;
    ``signing``: mlfreeze.bundle.signing.sign_bundle()'s record, None for an unsigned bundle.
    """
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
        "onnxruntime": onnxruntime_fact(distributions) if flavor in ("full", "slim") else None,
        "distributions": {k: distributions[k] for k in KEY_DISTRIBUTIONS
                          if k in distributions and shipped(k, flavor)},
        "model_set": model_set if models else None,  # the set this bundle ships (none without models)
        "models": [dict(m) for m in models],
        "unpinned_goldens": sorted(set(unpinned_goldens)),
        "verification": dict(verification) if verification is not None else None,
        "selftest": dict(selftest) if selftest is not None else None,
        "prune": list(prune),
        "record": dict(record),
        "git_commit": git_commit,
        "inputs_sha256": inputs_sha256,
        "lock_sha256": lock_sha256,  # sha256 of the locks/<profile>.txt the environment was installed from
        "update_root": update_root,
        "cuda_archs": list(cuda_archs),
        "glibc": dict(glibc) if glibc is not None else None,
        "signing": dict(signing) if signing is not None else None,
        "built_at": (built_at or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
    }


def write(bundle: Path, info: Mapping[str, Any]) -> Path:
    """Validate and write ``bundle/BUILD-INFO.json`` (a schema violation is a bug: ValueError)."""
    return _reader.write(bundle, info)


def read(bundle: Path) -> dict[str, Any]:
    """The validated document; ConfigError (exit 2) naming the file and key when it is not valid."""
    try:
        return _reader.read(bundle)
    except BuildInfoError as exc:
        raise ConfigError(f"{exc}; rebuild the bundle (mlfreeze build) or restore the file") from None


def report_path(reports_dir: Path, platform: str, flavor: str) -> Path:
    """``dist/reports/verify-<platform>-<flavor>.json``: one verify report per flavor (``.xml`` beside it)."""
    return reports_dir / f"verify-{platform}-{flavor}.json"


def verified(report: Path, *, set_name: str, flavor: str, platform: str) -> dict[str, Any]:
    """BUILD-INFO's ``verification`` for a flavor that ships models, from the report the verify stage wrote.

    The report must be for this set, flavor and platform (its ``context``), so a report of another
    set, flavor or run is refused (VerificationError, exit 1) instead of recorded.
    """
    try:
        data = report.read_bytes()
        doc = json.loads(data)
        context, summary = doc["context"], doc["summary"]
        passed = doc["passed"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"{report}: not a verify report ({exc}); run the verify stage for {flavor} "
                                "again") from None
    for key, want in (("set", set_name), ("flavor", flavor), ("platform", platform)):
        if context.get(key) != want:
            raise VerificationError(f"{report}: verifies {key} {context.get(key)!r}, but the {flavor} bundle "
                                    f"ships {key} {want!r}; run `mlfreeze verify --set {set_name} --platform "
                                    f"{platform}` for it")
    return {"applies": True, "set": set_name, "flavor": flavor, "platform": platform, "report": REPORT_IN_BUNDLE,
            "report_sha256": hashlib.sha256(data).hexdigest(), "passed": passed is True,
            **{k: int(summary.get(k, 0)) for k in ("checks", "failed", "warnings", "skipped")}}


def not_applicable(health: Mapping[str, Any], check: str = "health") -> dict[str, Any]:
    """BUILD-INFO's ``verification`` for a flavor that ships no models: the check of its entry instead
    (``health``: ``--health``; ``serve``: its server started and answered its readiness URL; ``smoke``:
    its smoke command)."""
    return {"applies": False, "reason": "this flavor ships no models", "check": check,
            "passed": health["passed"] is True, "checks": int(health["checks"]), "failed": int(health["failed"])}
