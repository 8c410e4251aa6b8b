"""Table, JSON and JUnit outputs, the summary rule (--strict), and the bundle index."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mlfreeze_runtime.verify import bundle, report
from mlfreeze_runtime.verify.result import CheckResult, summarize

RESULTS = [
    CheckResult(model="a", check="load", status="pass", got="ok"),
    CheckResult(model="a", check="golden", status="warn", expected="pinned golden outputs", got="goldens not pinned"),
    CheckResult(model="b", check="zero_shot_top1", status="fail", expected="top-1 >= 1.00", got="0.06"),
    CheckResult(model="b", check="cross_device", status="skip", got="device is cpu"),
]


def test_summary_and_strict() -> None:
    assert summarize(RESULTS[:2]).passed is True
    assert summarize(RESULTS[:2], strict=True).passed is False
    s = summarize(RESULTS)
    assert (s.passed, s.checks, s.failed, s.warnings, s.skipped) == (False, 4, 1, 1, 1)


def test_table_says_what_was_expected_and_what_came_out() -> None:
    text = report.table(RESULTS)
    line = next(row for row in text.splitlines() if "zero_shot_top1" in row)
    assert "FAIL" in line and "expected top-1 >= 1.00; got 0.06" in line
    assert text.splitlines()[0].split() == ["MODEL", "CHECK", "STATUS", "DETAIL"]


def test_json_report(tmp_path: Path) -> None:
    report.write_json(tmp_path / "r.json", RESULTS, strict=False, context={"set": "demo"})
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["passed"] is False and doc["summary"]["failed"] == 1 and doc["context"]["set"] == "demo"
    assert doc["results"][2]["check"] == "zero_shot_top1"
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(("strict", "failures_a"), [(False, "0"), (True, "1")])
def test_junit(tmp_path: Path, strict: bool, failures_a: str) -> None:
    report.write_junit(tmp_path / "r.xml", RESULTS, strict=strict)
    root = ET.parse(tmp_path / "r.xml").getroot()
    suites = {s.get("name"): s for s in root}
    assert suites["a"].get("failures") == failures_a and suites["b"].get("failures") == "1"
    case = next(c for c in suites["b"] if c.get("name") == "zero_shot_top1")
    assert "got 0.06" in case.find("failure").get("message")
    assert next(c for c in suites["b"] if c.get("name") == "cross_device").find("skipped") is not None


def test_failure_lines() -> None:
    assert report.failure_lines(RESULTS, strict=False) == [
        "b: zero_shot_top1: FAIL: expected top-1 >= 1.00, got 0.06"]
    assert len(report.failure_lines(RESULTS, strict=True)) == 2


def test_models_index_roundtrip(tmp_path: Path) -> None:
    goldens = tmp_path / "g"
    goldens.mkdir()
    (goldens / "m.json").write_text("{}")
    path = bundle.write_models_index(
        tmp_path / "models", [{"id": "m", "kind": "clip", "arch": "X", "embed_dim": 8,
                               "files": {"w.safetensors": "m/w.safetensors"}, "verify": {"top1": 1.0}}],
        set_name="demo", expected_providers=["CPUExecutionProvider"], goldens_dir=goldens)
    assert path.name == "models.json" and (tmp_path / "models" / "m" / "golden.json").is_file()
    doc, refs = bundle.read_models_index(tmp_path / "models")
    assert doc["set"] == "demo" and doc["expected_providers"] == ["CPUExecutionProvider"]
    (ref,) = refs
    assert ref.files["w.safetensors"] == tmp_path / "models" / "m" / "w.safetensors"
    assert ref.golden == tmp_path / "models" / "m" / "golden.json" and ref.verify == {"top1": 1.0}


def test_models_index_errors(tmp_path: Path) -> None:
    with pytest.raises(bundle.IndexError_, match="models.json is missing"):
        bundle.read_models_index(tmp_path)
    (tmp_path / "models.json").write_text('{"schema_version": 1, "models": [{"id": "x"}]}')
    with pytest.raises(bundle.IndexError_, match=r"models\[0\]: missing key 'kind'"):
        bundle.read_models_index(tmp_path)
    with pytest.raises(bundle.IndexError_, match="missing kind"):
        bundle.write_models_index(tmp_path / "o", [{"id": "x"}], set_name="s")
