"""A real PyInstaller freeze of a lite bundle: self-test, BUILD-INFO, incremental skip, bad prune rule.

The app is a tiny stdlib-only stand-in written into tmp_path, so the test does not depend on the
example app; the full bundle end to end runs in `nox -s build-linux-cuda -- --set demo`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from lite_projects import freeze_lite, tiny_app

from mlfreeze import hostinfo
from mlfreeze.bundle.freeze import FreezeRequest, freeze_bundle
from mlfreeze.bundle.incremental import read_stamp
from mlfreeze.bundle.prune import PRUNE_FILE
from mlfreeze.errors import VerificationError

pytest.importorskip("PyInstaller")

APP = '''\
import json, sys
try:
    import torch  # noqa: F401  (excluded from lite bundles: must not be importable)
    ml = True
except ImportError:
    ml = False
if "--health" in sys.argv:
    print(json.dumps({"app": "tiny", "ml_available": ml, "frozen": bool(getattr(sys, "frozen", False))}))
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("lite")
    started = time.monotonic()
    bundle, kw = freeze_lite(root, tiny_app(root, APP, version="0.0.1"))
    return {"root": root, "kw": kw, "bundle": bundle, "cold_s": time.monotonic() - started}


def test_lite_bundle_answers_health_from_an_empty_environment(project: dict, tmp_path: Path) -> None:
    bundle = project["bundle"]
    assert bundle.name == f"tiny-0.0.1-{project['kw']['profile'].name}-lite"
    exe = bundle / f"tiny{hostinfo.exe_suffix(project['kw']['profile'].host_os)}"
    done = subprocess.run([str(exe), "--health"], cwd=tmp_path, env={}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"app": "tiny", "ml_available": False, "frozen": True}
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and not p.is_symlink())
    assert size < 60e6, f"lite bundle is {size / 1e6:.1f} MB"
    assert not (bundle / "models").exists() and not (bundle / "tiny-selftest").exists()


def test_build_info_records_the_build(project: dict) -> None:
    info = json.loads((project["bundle"] / "BUILD-INFO.json").read_text())
    assert info["flavor"] == "lite" and info["app"] == "tiny" and info["version"] == "0.0.1"
    assert info["selftest"] == {"passed": True, "checks": 2, "failed": 0}  # --health; nothing written inside
    assert info["torch"] is None and info["models"] == []
    assert info["prune"] == []  # no project rule applies to lite
    assert info["inputs_sha256"] == read_stamp(project["bundle"])


def test_unchanged_inputs_skip_the_freeze(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    stamp_mtime = (project["bundle"] / "BUILD-INFO.json").stat().st_mtime_ns
    started = time.monotonic()
    assert freeze_bundle(FreezeRequest(**project["kw"])) == project["bundle"]
    warm_s = time.monotonic() - started
    assert "inputs unchanged" in capsys.readouterr().out
    assert (project["bundle"] / "BUILD-INFO.json").stat().st_mtime_ns == stamp_mtime
    assert warm_s < 0.1 * project["cold_s"], (warm_s, project["cold_s"])


def test_a_prune_rule_that_breaks_the_bundle_fails_the_build(project: dict, tmp_path: Path) -> None:
    bad = tmp_path / "prune.toml"
    bad.write_text(PRUNE_FILE.read_text() + '\n[[rule]]\nname = "bad"\nglobs = ["base_library.zip"]\n'
                   'flavors = ["lite"]\n')
    dist = project["kw"]["dist_dir"]
    shutil.rmtree(dist / (project["bundle"].name + ".FAILED"), ignore_errors=True)
    with pytest.raises(VerificationError) as err:
        freeze_bundle(FreezeRequest(**{**project["kw"], "dist_dir": dist, "prune_file": bad}))
    assert err.value.exit_code == 1 and "tiny --health" in err.value.message
    assert not project["bundle"].exists(), "a failed bundle must not stay where a good one would be"
    failed = dist / (project["bundle"].name + ".FAILED")
    assert failed.is_dir() and not (failed / "_internal" / "base_library.zip").exists()
    assert not (failed / "BUILD-INFO.json").exists() and read_stamp(failed) is None
