"""BUILD-INFO.json follows the contract in docs/architecture.md "Bundle outputs"."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from mlfreeze.buildinfo import build_info, parse_torch_version_py, read, write

CONTRACT_KEYS = {"schema_version", "app", "version", "platform", "accelerator", "flavor", "archive_format", "python",
                 "torch", "cuda", "onnxruntime", "distributions", "model_set", "models", "verification", "selftest",
                 "prune", "git_commit", "built_at"}
DISTS = {"torch": "2.14.1", "onnxruntime-gpu": "1.31.1", "numpy": "2.4.6", "pyinstaller": "6.22.3", "rich": "1"}


def _info(flavor: str) -> dict:
    return build_info(app="photo-search", version="0.1.0", platform="linux-cuda", accelerator="cuda", flavor=flavor,
                      archive_format="tar.gz", distributions=DISTS, model_set="demo",
                      models=[{"id": "demo-clip", "files": {"demo-clip/w.bin": "ab" * 32}}] if flavor == "full" else [],
                      verification={"passed": True, "checks": 31, "failed": 0, "warnings": 0},
                      selftest={"passed": True, "checks": 20, "failed": 0},
                      prune=[{"rule": "triton", "bytes": 123}], git_commit=None, inputs_sha256="f" * 64,
                      built_at=datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc))


def test_full_build_info_has_every_contract_key(tmp_path: Path) -> None:
    info = _info("full")
    assert set(info) >= CONTRACT_KEYS
    assert info["onnxruntime"] == "onnxruntime-gpu 1.31.1"
    assert info["distributions"] == {"torch": "2.14.1", "onnxruntime-gpu": "1.31.1", "numpy": "2.4.6",
                                     "pyinstaller": "6.22.3"}
    assert info["built_at"] == "2026-11-23T10:00:00+00:00" and info["prune"] == [{"rule": "triton", "bytes": 123}]
    write(tmp_path, info)
    assert read(tmp_path) == info and not list(tmp_path.glob("*.tmp"))


def test_lite_build_info_claims_no_ml_stack() -> None:
    info = _info("lite")
    assert info["torch"] is None and info["onnxruntime"] is None and info["model_set"] is None
    assert info["models"] == [] and set(info["distributions"]) == {"pyinstaller"}


def test_torch_version_file_gives_the_local_tag_and_cuda() -> None:
    text = "__version__ = '2.14.1+cu130'\ndebug = False\ncuda: Optional[str] = '13.0'\n"
    assert parse_torch_version_py(text, "2.14.1") == ("2.14.1+cu130", "13.0")
    assert parse_torch_version_py("__version__ = '2.14.1+cpu'\ncuda: Optional[str] = None\n", "x") == ("2.14.1+cpu",
                                                                                                     None)
