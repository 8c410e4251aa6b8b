"""The gate's bookkeeping without models: an empty set fails, a suite that raises keeps every
result it produced, pinning re-judges the golden check in place (the models run once), and the
CLI refuses an empty set and a malformed verify table with one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib

from mlfreeze_runtime.verify import clip_checks, gate, goldens
from mlfreeze_runtime.verify.result import FAIL, PASS, WARN, CheckResult, ModelRef

MANIFEST = Path(__file__).resolve().parents[2] / "src" / "mlfreeze" / "specs" / "models.toml"


def _ref(tmp_path: Path) -> ModelRef:
    table = tomllib.loads(MANIFEST.read_text())["models"]["demo-clip"]["verify"]
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    return ModelRef(id="demo-clip", kind="clip", arch="a", embed_dim=64, files={"w.safetensors": weights},
                    verify=table, golden=tmp_path / "goldens" / "demo-clip.json")


def test_an_empty_model_list_fails() -> None:
    run = gate.run([])
    assert [(r.model, r.check, r.status) for r in run.results] == [(gate.EMPTY_SET, "models", FAIL)]


def test_a_suite_that_raises_keeps_its_earlier_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def suite(ref, spec, *, out, **_kw):
        out.append(CheckResult(model=ref.id, check="load", status=PASS))
        out.append(CheckResult(model=ref.id, check="zero_shot_top1", status=FAIL, got="0.05"))
        raise RuntimeError("CUDA error: device-side assert\nsecond line")

    monkeypatch.setattr(clip_checks, "run", suite)
    run = gate.run([_ref(tmp_path)])
    assert [(r.check, r.status) for r in run.results] == [
        ("files", PASS), ("load", PASS), ("zero_shot_top1", FAIL), ("runtime", FAIL)]
    assert run.results[-1].got == "RuntimeError: CUDA error: device-side assert"


def test_pin_rejudges_the_golden_check_without_running_again(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def suite(ref, spec, *, out, **_kw):
        calls.append(ref.id)
        values = {"image/x": [0.25, 0.5]}
        out.append(CheckResult(model=ref.id, check="load", status=PASS))
        out.append(goldens.check(ref.id, ref.golden, values, tolerance=spec.golden_tolerance))
        return out, values

    monkeypatch.setattr(clip_checks, "run", suite)
    ref = _ref(tmp_path)
    run = gate.run([ref])
    assert [r.status for r in run.results if r.check == "golden"] == [WARN]
    written = gate.pin(run, tmp_path / "goldens", models=[ref])
    assert calls == ["demo-clip"]  # once
    assert written == [tmp_path / "goldens" / "demo-clip.json"]
    assert json.loads(written[0].read_text())["values"] == {"image/x": [0.25, 0.5]}
    golden = [r for r in run.results if r.check == "golden"]
    assert [r.status for r in golden] == [PASS] and "demo-clip.json" in golden[0].expected
    assert [r.check for r in run.results] == ["files", "load", "golden"]  # replaced in place, order kept


def _manifest(tmp_path: Path, edit) -> Path:
    text = edit(MANIFEST.read_text())
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_cli_refuses_an_empty_set_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlfreeze import cli

    m = _manifest(tmp_path, lambda t: t.replace("[sets]\n", "[sets]\nnone = []\n", 1))
    assert cli.main(["verify", "--manifest", str(m), "--set", "none", "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model set 'none'" in err[0] and "is empty" in err[0]


def test_cli_refuses_a_malformed_verify_table_naming_the_key(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from mlfreeze import cli

    m = _manifest(tmp_path, lambda t: t.replace('count = 3, min_score = 0.6', 'count = 3, min_score = "high"'))
    assert 'min_score = "high"' in m.read_text()
    assert cli.main(["verify", "--manifest", str(m), "--set", "demo", "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "models.demo-faces.verify.faces[0].min_score" in err[0] and "'high'" in err[0]
    assert not (tmp_path / "c").exists()  # refused before anything was fetched
