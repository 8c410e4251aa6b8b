"""A real verify report (the gate on the demo models) is what a full bundle's BUILD-INFO records.

`mlfreeze verify --flavor full --report F` writes the set, flavor and platform into the report's
context; `mlfreeze.bundle.buildinfo.verified` (what freeze records) takes it for exactly that set, flavor
and platform and refuses it for any other.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlfreeze import cli, hostinfo
from mlfreeze.bundle.buildinfo import report_path, verified
from mlfreeze.errors import VerificationError
from mlfreeze.platforms.profiles import all_profiles

pytest.importorskip("torch")
pytest.importorskip("mlfreeze.models.fetch", reason="needs the fetch stage")


def _platform() -> str:
    host = hostinfo.current()
    for p in all_profiles().values():
        if (p.host_os, p.host_arch, p.accelerator) == (host.os, host.arch, "cpu"):
            return p.name
    pytest.skip(f"no CPU profile builds on {host}")


def test_a_real_report_is_recorded_for_its_own_flavor_only(tmp_path: Path) -> None:
    platform = _platform()
    report = report_path(tmp_path / "reports", platform, "full")
    assert report.name == f"verify-{platform}-full.json"
    assert cli.main(["verify", "--set", "demo", "--platform", platform, "--flavor", "full",
                     "--cache", str(tmp_path / "cache"), "--report", str(report),
                     "--junit", str(report.with_suffix(".xml"))]) == 0
    doc = json.loads(report.read_text())
    assert doc["context"]["flavor"] == "full" and doc["context"]["set"] == "demo"
    v = verified(report, set_name="demo", flavor="full", platform=platform)
    assert v["passed"] is True and v["checks"] == doc["summary"]["checks"] > 0
    assert v["report_sha256"] == hashlib.sha256(report.read_bytes()).hexdigest()
    with pytest.raises(VerificationError, match="verifies flavor 'full'"):
        verified(report, set_name="demo", flavor="slim", platform=platform)
    with pytest.raises(VerificationError, match="verifies set 'demo'"):
        verified(report, set_name="default", flavor="full", platform=platform)
