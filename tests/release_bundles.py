"""Small hand-made bundles for the release tests (a stand-in for freeze's output, same layout)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from mlfreeze_runtime import record

APP = "photo-search"
VERSION = "0.1.0"
EPOCH = "1767225600"  # 2026-01-01T00:00:00Z


WEIGHTS = b"\x00\x01demo-weights" * 100
GOLDEN = b'{"demo": "golden"}\n'


def verify_report(platform: str, flavor: str = "full", *, set_name: str = "demo", passed: bool = True) -> bytes:
    """A verify report as ``mlfreeze verify --report`` writes it (the parts audit reads)."""
    doc = {"schema_version": 1, "passed": passed, "strict": False,
           "summary": {"checks": 31, "failed": 0 if passed else 1, "warnings": 0, "skipped": 0},
           "context": {"set": set_name, "platform": platform, "flavor": flavor}, "results": []}
    return (json.dumps(doc, indent=2) + "\n").encode()


def build_info(platform: str, flavor: str, **overrides: Any) -> dict[str, Any]:
    """A valid BUILD-INFO document (docs/build-info.schema.json) for the bundle make_bundle writes."""
    fmt = "zip" if platform.startswith("win") else "tar.gz"
    accelerator = {"linux-cuda": "cuda", "win-cuda": "cuda", "mac-arm64": "mps"}.get(platform, "cpu")
    full = flavor == "full"
    info: dict[str, Any] = {
        "schema_version": 2, "app": APP, "version": VERSION, "platform": platform, "accelerator": accelerator,
        "flavor": flavor, "archive_format": fmt, "python": "3.11.7",
        "torch": "2.14.1+cu130" if full else None, "cuda": "13.0" if accelerator == "cuda" else None,
        "onnxruntime": "onnxruntime-gpu 1.31.1" if full else None,
        "distributions": {"torch": "2.14.1", "pyinstaller": "6.22.3"} if full else {"pyinstaller": "6.22.3"},
        "model_set": "demo" if full else None,
        "models": [{"id": "demo-clip", "kind": "clip", "golden": True,
                    "files": {"demo-clip/weights.bin": hashlib.sha256(WEIGHTS).hexdigest()}}] if full else [],
        "unpinned_goldens": [],
        "verification": {"applies": True, "set": "demo", "flavor": "full", "platform": platform,
                         "report": "verify-report.json",
                         "report_sha256": hashlib.sha256(verify_report(platform)).hexdigest(), "passed": True,
                         "checks": 31, "failed": 0, "warnings": 0, "skipped": 0} if full else
        {"applies": False, "reason": "this flavor ships no models", "check": "health", "passed": True,
         "checks": 1, "failed": 0},
        "selftest": {"passed": True, "checks": 20 if full else 1, "failed": 0},
        "prune": [], "record": {"sha256": "0" * 64, "files": 0, "bytes": 0},
        "git_commit": "0" * 40, "inputs_sha256": "1" * 64, "built_at": "2026-11-23T09:00:00+00:00",
    }
    info.update(overrides)
    return info


def make_bundle(dist: Path, platform: str = "linux-cpu", flavor: str = "lite", *, payload: int = 20_000,
                seed: bytes = b"", golden: bool = True, contract: dict[str, Any] | None = None,
                **overrides: Any) -> Path:
    """``dist/<app>-<version>-<platform>-<flavor>/`` with an executable, libraries, dist-info, models,
    RECORD and BUILD-INFO.json, laid out as freeze lays it out (``overrides`` change BUILD-INFO keys;
    ``contract``: an app-contract.json document, ``{"serve": {...}}``, frozen beside the executable)."""
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
        models = bundle / "models"
        (models / "demo-clip").mkdir(parents=True)
        (models / "demo-clip" / "weights.bin").write_bytes(WEIGHTS)
        entry: dict[str, Any] = {"id": "demo-clip", "kind": "clip", "arch": "demo", "embed_dim": 8,
                                 "files": {"weights.bin": "demo-clip/weights.bin"},
                                 "sha256": {"demo-clip/weights.bin": hashlib.sha256(WEIGHTS).hexdigest()},
                                 "roles": {"weights.bin": "weights"}, "verify": {}}
        if golden:
            (models / "demo-clip" / "golden.json").write_bytes(GOLDEN)
            entry["golden"] = "demo-clip/golden.json"
        (models / "models.json").write_text(json.dumps({"schema_version": 1, "set": "demo", "expected_providers": [],
                                                        "models": [entry]}, indent=2), encoding="utf-8")
        (bundle / "verify-report.json").write_bytes(verify_report(platform))
        selftest = bundle / f"{APP}-selftest{exe}"
        selftest.write_bytes(b"#!/bin/sh\nexit 0\n")
        selftest.chmod(0o755)
    if contract is not None:
        (bundle / "app-contract.json").write_text(json.dumps(contract), encoding="utf-8")
    (bundle / ".mlfreeze-stamp").write_text('{"inputs_sha256": "' + "1" * 64 + '"}\n', encoding="utf-8")
    if not golden:
        overrides.setdefault("models", [{**build_info(platform, flavor)["models"][0], "golden": False}])
    return seal(bundle, platform, flavor, **overrides)


def seal(bundle: Path, platform: str, flavor: str, **overrides: Any) -> Path:
    """Write ``bundle``'s RECORD, then a BUILD-INFO.json that names it (as freeze does last)."""
    _, digest = record.write(bundle)
    rows = record.read(bundle).values()
    info = build_info(platform, flavor, record={"sha256": digest, "files": len(rows),
                                                "bytes": sum(e.size for e in rows)})
    info.update(overrides)
    (bundle / "BUILD-INFO.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return bundle


@pytest.fixture(autouse=True)
def fake_bundles_have_no_closure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hand-made bundles hold no real shared libraries: audit's closure check is left out for them
    (import this name into a test module to apply it; the closure has its own tests)."""
    from mlfreeze.bundle import closure

    monkeypatch.setattr(closure, "closure_findings", lambda *_args: [])


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
