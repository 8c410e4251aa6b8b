"""BUILD-INFO.json follows the contract in docs/architecture.md "Bundle outputs"."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from mlfreeze.bundle.buildinfo import build_info, not_applicable, parse_torch_version_py, read, write
from mlfreeze.errors import ConfigError

CONTRACT_KEYS = {"schema_version", "app", "version", "platform", "accelerator", "flavor", "archive_format", "python",
                 "torch", "cuda", "onnxruntime", "distributions", "model_set", "models", "verification", "selftest",
                 "prune", "git_commit", "built_at", "record", "unpinned_goldens", "inputs_sha256"}
VERIFIED = {"applies": True, "set": "demo", "flavor": "full", "platform": "linux-cuda", "report": "verify-report.json",
            "report_sha256": "c" * 64, "passed": True, "checks": 31, "failed": 0, "warnings": 0, "skipped": 0}
DISTS = {"torch": "2.14.1", "onnxruntime-gpu": "1.31.1", "numpy": "2.4.6", "pyinstaller": "6.22.3", "rich": "1"}


def _info(flavor: str) -> dict:
    return build_info(app="photo-search", version="0.1.0", platform="linux-cuda", accelerator="cuda", flavor=flavor,
                      archive_format="tar.gz", distributions=DISTS, model_set="demo",
                      models=[{"id": "demo-clip", "kind": "clip", "golden": False,
                               "files": {"demo-clip/w.bin": "ab" * 32}}] if flavor == "full" else [],
                      unpinned_goldens=["demo-clip"] if flavor == "full" else [],
                      verification=VERIFIED if flavor == "full" else not_applicable(
                          {"passed": True, "checks": 1, "failed": 0}),
                      selftest={"passed": True, "checks": 20, "failed": 0},
                      record={"sha256": "d" * 64, "files": 10, "bytes": 1000},
                      prune=[{"rule": "triton", "bytes": 123}], git_commit=None, inputs_sha256="f" * 64,
                      built_at=datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc))


def test_full_build_info_has_every_contract_key(tmp_path: Path) -> None:
    info = _info("full")
    assert set(info) >= CONTRACT_KEYS
    assert info["onnxruntime"] == "onnxruntime-gpu 1.31.1"
    assert info["distributions"] == {"torch": "2.14.1", "onnxruntime-gpu": "1.31.1", "numpy": "2.4.6",
                                     "pyinstaller": "6.22.3"}
    assert info["built_at"] == "2026-11-23T10:00:00+00:00" and info["prune"] == [{"rule": "triton", "bytes": 123}]
    assert info["unpinned_goldens"] == ["demo-clip"] and info["record"]["sha256"] == "d" * 64
    write(tmp_path, info)
    assert read(tmp_path) == info and not list(tmp_path.glob("*.tmp"))


def test_write_refuses_a_document_the_schema_refuses(tmp_path: Path) -> None:
    info = _info("full")
    info["verification"] = {"passed": True, "checks": 31, "failed": 0}  # the old, unattributed summary
    with pytest.raises(ValueError, match="verification"):
        write(tmp_path, info)
    assert not (tmp_path / "BUILD-INFO.json").exists()
    (tmp_path / "BUILD-INFO.json").write_text('{"schema_version": 1}')
    with pytest.raises(ConfigError, match="schema_version is 1"):
        read(tmp_path)


def test_slim_build_info_names_onnxruntime_and_not_torch() -> None:
    info = _info("slim")
    assert info["torch"] is None and info["cuda"] is None
    assert info["onnxruntime"] == "onnxruntime-gpu 1.31.1"
    assert info["distributions"] == {"onnxruntime-gpu": "1.31.1", "numpy": "2.4.6", "pyinstaller": "6.22.3"}


def test_lite_build_info_claims_no_ml_stack() -> None:
    info = _info("lite")
    assert info["torch"] is None and info["onnxruntime"] is None and info["model_set"] is None
    assert info["models"] == [] and set(info["distributions"]) == {"pyinstaller"}
    assert info["verification"] == {"applies": False, "reason": "this flavor ships no models", "check": "health",
                                    "passed": True, "checks": 1, "failed": 0}


def test_torch_version_file_gives_the_local_tag_and_cuda() -> None:
    text = "__version__ = '2.14.1+cu130'\ndebug = False\ncuda: Optional[str] = '13.0'\n"
    assert parse_torch_version_py(text, "2.14.1") == ("2.14.1+cu130", "13.0")
    assert parse_torch_version_py("__version__ = '2.14.1+cpu'\ncuda: Optional[str] = None\n", "x") == ("2.14.1+cpu",
                                                                                                     None)
