"""Parsing a frozen self-test's output; the clean environment; moving a failed bundle aside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlfreeze.bundle.selftest import SelftestResult, clean_env, fail_bundle, failures_of, parse_json_output
from mlfreeze.errors import VerificationError


def test_clean_env_drops_python_and_venv_variables(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr\n")
    env = clean_env({"PATH": f"{venv / 'bin'}:/usr/bin", "PYTHONPATH": "/src", "VIRTUAL_ENV": str(venv),
                     "PYTHONHOME": "/x", "CONDA_PREFIX": "/c", "MLFREEZE_MODELS_DIR": "/m", "HOME": "/home/u",
                     "LANG": "C.UTF-8", "LD_LIBRARY_PATH": "/venv/lib"})
    assert env == {"PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8"}


def test_clean_env_always_has_a_path() -> None:
    assert clean_env({})["PATH"].startswith("/usr/local/bin")


@pytest.mark.parametrize(("out", "want"), [
    ('{"passed": true}', {"passed": True}),
    ('WARNING: noise\n{"passed": false, "checks": 3}\n', {"passed": False, "checks": 3}),
    ('{"a": 1}\n{"b": 2}', {"b": 2}),
    ("no json here", None),
    ("[1, 2]", None),
    ("{broken", None),
])
def test_parse_json_output(out: str, want: object) -> None:
    assert parse_json_output(out) == want


def test_failures_of_reads_the_report_the_bundle_prints() -> None:
    from mlfreeze_runtime.verify.report import document
    from mlfreeze_runtime.verify.result import CheckResult

    results = [CheckResult(model="demo-clip", check="tokenizer", status="fail", expected="vocab present",
                           got="bpe_simple_vocab_16e6.txt.gz missing"),
               CheckResult(model="demo-clip", check="finite", status="pass"),
               CheckResult(model="demo-faces", check="golden", status="warn", got="not pinned")]
    report = json.loads(json.dumps(document(results, strict=False, context={})))
    assert failures_of(report) == ["demo-clip: tokenizer: FAIL: expected vocab present, "
                                   "got bpe_simple_vocab_16e6.txt.gz missing"]
    assert failures_of({"results": [{"model": "m", "check": "c", "status": "fail", "odd": 1}, "junk"]}) \
        == ["m: c: FAIL"]
    assert failures_of({"results": 3}) == []


def test_fail_bundle_renames_and_replaces_an_older_failure(tmp_path: Path) -> None:
    bundle = tmp_path / "app-1-linux-cuda-full"
    (bundle / "_internal").mkdir(parents=True)
    (tmp_path / "app-1-linux-cuda-full.FAILED" / "old").mkdir(parents=True)
    result = SelftestResult(passed=False, checks=5, failed=2, failures=("clip: vocab missing", "faces: none"))
    err = fail_bundle(bundle, result)
    assert isinstance(err, VerificationError) and err.exit_code == 1
    assert "clip: vocab missing (+1 more)" in err.message and ".FAILED" in err.message
    assert not bundle.exists()
    assert (tmp_path / "app-1-linux-cuda-full.FAILED" / "_internal").is_dir()
    assert not (tmp_path / "app-1-linux-cuda-full.FAILED" / "old").exists()


def test_fail_bundle_can_remove(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    err = fail_bundle(bundle, SelftestResult(passed=False, checks=1, failed=1, failures=("x",)), keep=False)
    assert not bundle.exists() and not (tmp_path / "b.FAILED").exists() and "removed" in err.message


def test_app_results_lists_the_apps_own_checks_on_one_line() -> None:
    from mlfreeze.bundle.selftest import app_results

    report = {"results": [{"model": "demo-clip", "check": "golden", "status": "pass"},
                          {"model": "app x", "check": "app_serve", "status": "pass"},
                          {"model": "app x", "check": "app_serve.probe1.text", "status": "fail"},
                          {"model": "app x", "check": "app_writes", "status": "pass"}, "junk"]}
    assert app_results(report) == "app_serve pass, app_serve.probe1.text fail, app_writes pass"
    assert app_results({"results": 3}) == "" and app_results({}) == ""
