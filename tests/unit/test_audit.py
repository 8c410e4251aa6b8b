"""``mlfreeze audit``: findings, their classification (3 integrity, 1 verification), and release refusing them.

The bundles are hand-made with freeze's layout (tests/release_bundles.py: RECORD, models.json, the
shipped verify report, BUILD-INFO); the real frozen lite bundle is audited in
tests/integration/test_audit_lite.py.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from release_bundles import (
    EPOCH,
    fake_bundles_have_no_closure,  # noqa: F401  (autouse)
    make_bundle,
)

from mlfreeze import cli
from mlfreeze.bundle import audit
from mlfreeze.errors import IntegrityError, VerificationError
from mlfreeze.release import assemble as release
from mlfreeze_runtime import record

ENV = {"SOURCE_DATE_EPOCH": EPOCH}


def _areas(result: audit.AuditResult) -> set[tuple[str, str]]:
    return {(f.area, f.subject) for f in result.findings}


def _edit_info(bundle: Path, **changes: Any) -> None:
    path = bundle / "BUILD-INFO.json"
    info = json.loads(path.read_text())
    for dotted, value in changes.items():
        *keys, last = dotted.split("__")
        target = info
        for k in keys:
            target = target[k]
        target[last] = value
    path.write_text(json.dumps(info))


def _rerecord(bundle: Path) -> None:
    """Rewrite RECORD after an edit and point BUILD-INFO at it (a consistent, re-sealed bundle)."""
    _, digest = record.write(bundle)
    _edit_info(bundle, record__sha256=digest)


def test_good_bundles_pass_with_one_ok_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = make_bundle(tmp_path, "linux-cuda", "full")
    lite = make_bundle(tmp_path, "linux-cpu", "lite")
    assert cli.main(["audit", str(full), str(lite)]) == 0
    ok = [ln for ln in capsys.readouterr().out.splitlines() if " OK " in f" {ln} "]
    assert len(ok) == 2 and "verification applies and passed" in ok[0] and "does not apply" in ok[1]


def test_the_dist_folder_is_not_a_bundle_exit_2_naming_the_bundles_in_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = make_bundle(tmp_path, "linux-cuda", "full")
    (tmp_path / "reports").mkdir()
    assert cli.main(["audit", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a bundle" in err and f"the bundles in it: {full.name}" in err
    # a bundle that lost RECORD and BUILD-INFO.json is still a bundle: integrity, exit 3
    (full / "RECORD").unlink()
    (full / "BUILD-INFO.json").unlink()
    assert cli.main(["audit", str(full)]) == 3


@pytest.mark.parametrize("damage", ["truncate", "delete", "extra", "edit-same-size"])
def test_integrity_damage_is_exit_3_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    damage: str) -> None:
    bundle = make_bundle(tmp_path, "linux-cuda", "full")
    weights = bundle / "models" / "demo-clip" / "weights.bin"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "delete":
        weights.unlink()
    elif damage == "extra":
        (bundle / "models" / "demo-clip" / "evil.bin").write_bytes(b"x")
    else:
        data = bytearray(weights.read_bytes())
        data[5] ^= 1
        weights.write_bytes(bytes(data))
    result = audit.audit_bundle(bundle)
    assert result.exit_code == 3 and {f.kind for f in result.findings} == {"integrity"}
    subject = "models/demo-clip/evil.bin" if damage == "extra" else "models/demo-clip/weights.bin"
    assert ("record", subject) in _areas(result)
    assert cli.main(["audit", str(bundle)]) == 3
    captured = capsys.readouterr()
    assert subject in captured.out and subject in captured.err
    # an extra file says why it is there and where an app writes instead; other damage does not
    assert ("written inside the bundle" in captured.err and "data_dir()" in captured.err) == (damage == "extra")


def test_a_resealed_record_does_not_hide_a_model_that_breaks_its_pin(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "linux-cuda", "full")
    (bundle / "models" / "demo-clip" / "weights.bin").write_bytes(b"other weights")
    _rerecord(bundle)
    result = audit.audit_bundle(bundle)
    assert _areas(result) == {("pins", "models/demo-clip/weights.bin")} and result.exit_code == 3
    assert "pinned" in result.findings[0].detail


def test_record_that_build_info_does_not_name_is_integrity(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "linux-cpu", "lite")
    (bundle / "RECORD").write_text((bundle / "RECORD").read_text() + "\n")
    assert _areas(audit.audit_bundle(bundle)) == {("record", "RECORD")}
    (bundle / "RECORD").unlink()
    result = audit.audit_bundle(bundle)
    assert _areas(result) == {("record", "RECORD")} and "missing" in result.findings[0].detail
    (bundle / "BUILD-INFO.json").write_text("{")
    assert ("build-info", "BUILD-INFO.json") in _areas(audit.audit_bundle(bundle))


@pytest.mark.parametrize(("changes", "says"), [
    ({"verification": None}, "verification is missing"),
    ({"verification__set": "default"}, "for set 'default'"),
    ({"verification__flavor": "slim"}, "for flavor 'slim'"),
    ({"verification__platform": "linux-cpu"}, "for platform 'linux-cpu'"),
    ({"verification__report_sha256": "0" * 64}, "another run's report"),
    ({"verification__passed": False, "verification__failed": 2}, "verification failed"),
    ({"selftest__passed": False}, "self-test failed"),
    ({"verification": {"applies": False, "reason": "x", "check": "health", "passed": True, "checks": 1,
                       "failed": 0}}, "does not apply, but the bundle holds"),
])
def test_verification_findings_are_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          changes: dict[str, Any], says: str) -> None:
    bundle = make_bundle(tmp_path, "linux-cuda", "full")
    _edit_info(bundle, **changes)
    result = audit.audit_bundle(bundle)
    assert result.exit_code == 1 and {f.kind for f in result.findings} == {"verification"}
    assert any(says in line for line in result.lines()), result.lines()
    assert cli.main(["audit", str(bundle)]) == 1
    assert says in capsys.readouterr().out


def test_a_report_of_another_set_shipped_and_resealed_is_caught(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "linux-cuda", "full")
    report = bundle / "verify-report.json"
    doc = json.loads(report.read_text())
    doc["context"]["set"] = "default"
    report.write_text(json.dumps(doc))
    _rerecord(bundle)
    _edit_info(bundle, verification__report_sha256=hashlib.sha256(report.read_bytes()).hexdigest())
    result = audit.audit_bundle(bundle)
    assert [ln for ln in result.lines() if "verify-report.json" in ln and "set 'default'" in ln]
    assert result.exit_code == 1


def test_integrity_wins_over_verification_and_exit_code_combines(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "linux-cuda", "full")
    _edit_info(bundle, verification=None)
    (bundle / "_internal" / "libpayload.so").unlink()
    result = audit.audit_bundle(bundle)
    assert {f.kind for f in result.findings} == {"integrity", "verification"} and result.exit_code == 3
    lite = audit.audit_bundle(make_bundle(tmp_path / "l", "linux-cpu", "lite"))
    assert audit.exit_code([lite]) == 0 and audit.exit_code([lite, result]) == 3
    assert isinstance(audit.refusal([lite, result]), IntegrityError)
    unverified = make_bundle(tmp_path / "u", "linux-cpu", "full", verification=None)
    assert isinstance(audit.refusal([lite, audit.audit_bundle(unverified)]), VerificationError)


# --- release ----------------------------------------------------------------------------------

def test_release_refuses_a_damaged_bundle_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = tmp_path / "dist"
    make_bundle(dist, "linux-cpu", "lite")
    full = make_bundle(dist, "linux-cuda", "full")
    weights = full / "models" / "demo-clip" / "weights.bin"
    weights.write_bytes(weights.read_bytes()[:-7])
    assert cli.main(["release", str(dist)]) == 3
    err = capsys.readouterr().err
    assert "models/demo-clip/weights.bin" in err and "audit" in err
    assert not (dist / "release").exists() and not list(dist.glob(".release-tmp-*"))


def test_release_refuses_an_unverified_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = tmp_path / "dist"
    make_bundle(dist, "linux-cuda", "full", verification=None)
    assert cli.main(["release", str(dist)]) == 1
    assert "verification is missing" in capsys.readouterr().err


def test_release_refuses_unpinned_goldens_unless_opted_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = tmp_path / "dist"
    make_bundle(dist, "linux-cuda", "full", golden=False)
    assert cli.main(["audit", str(dist / "photo-search-0.1.0-linux-cuda-full")]) == 0  # audit: shippable bytes
    assert cli.main(["release", str(dist)]) == 1
    err = capsys.readouterr().err
    assert "demo-clip ships without pinned goldens" in err and "unpinned_goldens" in err
    ok = tmp_path / "ok"
    make_bundle(ok, "linux-cuda", "full", golden=False, unpinned_goldens=["demo-clip"])
    result = release.release(ok, env=ENV)
    assert result.manifest["assets"][0]["unpinned_goldens"] == ["demo-clip"]


def test_release_hashes_come_from_the_files_and_the_stamp_stays_out(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    bundle = make_bundle(dist, "linux-cuda", "full")
    assert (bundle / ".mlfreeze-stamp").is_file()
    result = release.release(dist, env=ENV)
    asset = result.manifest["assets"][0]
    weights = (bundle / "models" / "demo-clip" / "weights.bin").read_bytes()
    assert asset["models"][0]["sha256"] == {"demo-clip/weights.bin": hashlib.sha256(weights).hexdigest()}
    with tarfile.open(result.directory / asset["archive"]) as tar:
        names = tar.getnames()
    assert f"{bundle.name}/RECORD" in names and f"{bundle.name}/BUILD-INFO.json" in names
    assert not [n for n in names if n.endswith(".mlfreeze-stamp")]
    sbom = json.loads((result.directory / asset["sbom"]).read_text())
    model = [c for c in sbom["components"] if c["type"] == "machine-learning-model"][0]
    assert model["hashes"][0]["content"] == hashlib.sha256(weights).hexdigest()


def test_a_closure_reader_that_is_not_installed_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import mlfreeze.bundle.closure

    def missing(*_args: Any) -> list[str]:
        raise ModuleNotFoundError("No module named 'elftools'", name="elftools")

    monkeypatch.setattr(mlfreeze.bundle.closure, "closure_findings", missing)
    full = make_bundle(tmp_path, "linux-cuda", "full")
    assert cli.main(["audit", str(full)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs elftools" in err and "pip install" in err


def _slim_towers(bundle: Path, *, record: dict | None = None, report_opt_out: list[str] | None = None) -> None:
    """Give the hand-made bundle's CLIP two ONNX towers (and maybe an agreement record), re-sealed."""
    from release_bundles import seal, verify_report

    models = bundle / "models"
    doc = json.loads((models / "models.json").read_text())
    entry = doc["models"][0]
    towers = {"image": b"image tower", "text": b"text tower"}
    for tower, data in towers.items():
        (models / "demo-clip" / f"{tower}.onnx").write_bytes(data)
        entry["files"][f"{tower}.onnx"] = f"demo-clip/{tower}.onnx"
        entry["sha256"][f"demo-clip/{tower}.onnx"] = hashlib.sha256(data).hexdigest()
        entry["roles"][f"{tower}.onnx"] = f"{tower}_onnx"
    if record is not None:
        data = json.dumps(record).encode()
        (models / "demo-clip" / "agreement.json").write_bytes(data)
        entry["files"]["agreement.json"] = "demo-clip/agreement.json"
        entry["sha256"]["demo-clip/agreement.json"] = hashlib.sha256(data).hexdigest()
        entry["roles"]["agreement.json"] = "agreement"
    (models / "models.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    report = json.loads(verify_report("linux-cuda"))
    report["context"]["unproven_onnx"] = report_opt_out or []
    text = (json.dumps(report, indent=2) + "\n").encode()
    (bundle / "verify-report.json").write_bytes(text)
    info = json.loads((bundle / "BUILD-INFO.json").read_text())
    info["models"][0]["files"] = dict(entry["sha256"])
    info["verification"]["report_sha256"] = hashlib.sha256(text).hexdigest()
    seal(bundle, "linux-cuda", "full", models=info["models"], verification=info["verification"],
         unpinned_goldens=["demo-clip"])


def _record_of(image: bytes, text: bytes) -> dict:
    return {"schema_version": 1, "model": "demo-clip", "derived_from": "demo-clip@" + "a" * 64,
            "towers": {"image": {"sha256": hashlib.sha256(image).hexdigest()},
                       "text": {"sha256": hashlib.sha256(text).hexdigest()}},
            "agreement": {"image": {}, "text": {}}}


def test_release_refuses_unproven_onnx_towers_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = tmp_path / "dist"
    bundle = make_bundle(dist, "linux-cuda", "full", golden=False)
    _slim_towers(bundle)
    assert cli.main(["audit", str(bundle)]) == 0  # the bytes are what was recorded
    assert cli.main(["release", str(dist)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "demo-clip: its ONNX towers are unproven" in err
    assert "agreement record" in err and "pin-goldens" in err and "unproven_onnx" in err


@pytest.mark.parametrize(("record", "opt_out", "refused"), [
    (_record_of(b"image tower", b"text tower"), None, False),  # a record naming exactly these towers
    (_record_of(b"image tower", b"another text tower"), None, True),  # a record of other towers
    (None, ["demo-clip"], False),  # opted out, recorded by the verification that shipped
])
def test_release_accepts_towers_backed_by_their_record_or_an_opt_out(tmp_path: Path, record: dict | None,
                                                                     opt_out: list[str] | None, refused: bool) -> None:
    bundle = make_bundle(tmp_path / "dist", "linux-cuda", "full", golden=False)
    _slim_towers(bundle, record=record, report_opt_out=opt_out)
    result = audit.audit_bundle(bundle)
    assert not result.findings, result.lines()
    assert audit.unproven_onnx_models(result) == (["demo-clip"] if refused else [])
