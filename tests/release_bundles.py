"""Small hand-made bundles for the release tests (a stand-in for freeze's output, same layout)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

APP = "photo-search"
VERSION = "0.1.0"
EPOCH = "1767225600"  # 2026-01-01T00:00:00Z


def build_info(platform: str, flavor: str, **overrides: Any) -> dict[str, Any]:
    fmt = "zip" if platform.startswith("win") else "tar.gz"
    accelerator = {"linux-cuda": "cuda", "win-cuda": "cuda", "mac-arm64": "mps"}.get(platform, "cpu")
    weights = b"\x00\x01demo-weights" * 100
    info: dict[str, Any] = {
        "schema_version": 1, "app": APP, "version": VERSION, "platform": platform, "accelerator": accelerator,
        "flavor": flavor, "archive_format": fmt, "python": "3.11.7",
        "torch": "2.14.1+cu130" if flavor == "full" else None, "cuda": "13.0" if accelerator == "cuda" else None,
        "onnxruntime": "onnxruntime-gpu 1.31.1" if flavor == "full" else None,
        "distributions": {"torch": "2.14.1", "pyinstaller": "6.22.3"} if flavor == "full"
        else {"pyinstaller": "6.22.3"},
        "model_set": "demo" if flavor == "full" else None,
        "models": [{"id": "demo-clip", "kind": "clip",
                    "files": {"demo-clip/weights.bin": hashlib.sha256(weights).hexdigest()}}]
        if flavor == "full" else [],
        "verification": {"passed": True, "checks": 31, "failed": 0, "warnings": 0} if flavor == "full" else None,
        "selftest": {"passed": True, "checks": 20, "failed": 0} if flavor == "full" else None,
        "prune": [], "git_commit": "0" * 40, "built_at": "2026-11-23T09:00:00+00:00",
    }
    info.update(overrides)
    return info


def make_bundle(dist: Path, platform: str = "linux-cpu", flavor: str = "lite", *, payload: int = 20_000,
                seed: bytes = b"", **overrides: Any) -> Path:
    """``dist/<app>-<version>-<platform>-<flavor>/`` with an executable, libraries, dist-info, models."""
    exe = ".exe" if platform.startswith("win") else ""
    bundle = dist / f"{APP}-{VERSION}-{platform}-{flavor}"
    internal = bundle / "_internal"
    (internal / "numpy-2.1.3.dist-info").mkdir(parents=True)
    launcher = bundle / f"{APP}{exe}"
    launcher.write_bytes(b"#!/bin/sh\necho photo-search\n# " + seed + b"\n")
    launcher.chmod(0o755)
    (internal / "libpayload.so").write_bytes(random.Random(seed).randbytes(payload))  # incompressible
    (internal / "base_library.zip").write_bytes(b"PK" + bytes(range(256)) * 8)
    (internal / "numpy-2.1.3.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: numpy\nVersion: 2.1.3\n", encoding="utf-8")
    (internal / "empty-dir").mkdir()
    if flavor == "full":
        (bundle / "models" / "demo-clip").mkdir(parents=True)
        (bundle / "models" / "demo-clip" / "weights.bin").write_bytes(b"\x00\x01demo-weights" * 100)
        selftest = bundle / f"{APP}-selftest{exe}"
        selftest.write_bytes(b"#!/bin/sh\nexit 0\n")
        selftest.chmod(0o755)
    (bundle / "BUILD-INFO.json").write_text(json.dumps(build_info(platform, flavor, **overrides), indent=2),
                                            encoding="utf-8")
    return bundle


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
