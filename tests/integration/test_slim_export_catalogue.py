"""A catalogue of faulty ONNX exports of the demo CLIP, judged where a slim-only build judges them:
no torch, no goldens, no reference_sims. What stands between a faulty export and a release there is
the agreement record that ``mlfreeze export`` writes beside the towers (made with torch where the
towers were made) and the refusal of towers that carry no proof at all.

Faults are made the two ways real exports go wrong: from a deliberately altered copy of the torch
model exported with ``export_towers`` (the function ``mlfreeze export`` runs), or by editing the
exported ONNX graph with the ``onnx`` package. Each fault must be caught in each of three cases:

* its own honest record (made by ``mlfreeze.models.export.write_agreement`` with torch): the
  record's numbers fail the tolerances, or the load or a semantic check fails;
* the record of the faithful export carried over to it: the record names other towers;
* no record: ``onnx_proof`` refuses the unproven towers.

Good variants (a fresh export, other opsets, an onnxruntime-optimised graph, renamed nodes, an fp16
round trip with its declared tolerance) with their own records must pass every check.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx_variants import (  # noqa: E402
    FAULTS,
    GOOD,
    SOURCE,
    SPEC,
    VERIFY,
    Towers,
    both,
    export,
    fp16_round_trip,
    fresh,
    load_demo,
    other_training,
    record_for,
    renamed,
)

from mlfreeze.errors import VerificationError  # noqa: E402
from mlfreeze.models.verification import run_gate  # noqa: E402
from mlfreeze_runtime import clip as rclip  # noqa: E402
from mlfreeze_runtime.onnx_clip import META_SOURCE  # noqa: E402
from mlfreeze_runtime.verify import gate  # noqa: E402
from mlfreeze_runtime.verify.result import FAIL, ModelRef  # noqa: E402
from mlfreeze_runtime.verify.spec import parse_clip  # noqa: E402


@pytest.fixture(scope="module")
def loaded():
    return load_demo()


# ---- the slim-only gate ----

def slim_gate(tmp_path: Path, monkeypatch, towers: Towers, record: Path | None,
              agreement: dict | None = None) -> tuple[int, dict[str, str], str]:
    """The slim gate as a slim-only build runs it: no torch importable, no goldens, no reference_sims."""
    monkeypatch.setattr(rclip, "torch_clip_available", lambda: False)
    files = {"demo_clip_image.onnx": towers[0], "demo_clip_text.onnx": towers[1]}
    roles = {"demo_clip_image.onnx": "image_onnx", "demo_clip_text.onnx": "text_onnx"}
    if record is not None:
        files["demo_clip_agreement.json"], roles["demo_clip_agreement.json"] = record, "agreement"
    ref = ModelRef(id="demo-clip", kind="clip", arch=SPEC.arch, embed_dim=SPEC.embed_dim, files=files,
                   verify=VERIFY, golden=tmp_path / "no-goldens" / "demo-clip.json", roles=roles,
                   onnx_agreement=agreement or dict(SPEC.onnx_agreement), derived_from=SOURCE)
    report = tmp_path / "report.json"
    try:
        rc, msg = run_gate([ref], device="cpu", report=str(report), set_name="demo", flavor="slim",
                           clip_path="onnx"), ""
    except VerificationError as exc:
        rc, msg = exc.exit_code, exc.message
    results = json.loads(report.read_text())["results"]
    return rc, {r["check"]: r["status"] for r in results}, msg


@pytest.fixture(scope="module")
def faithful(loaded, tmp_path_factory) -> tuple[Towers, Path]:
    out = tmp_path_factory.mktemp("faithful")
    towers = export(loaded.model, loaded, out)
    return towers, record_for(loaded, towers, out / "agreement.json")


def _ref(towers: Towers, record: Path | None) -> ModelRef:
    files = {"demo_clip_image.onnx": towers[0], "demo_clip_text.onnx": towers[1]}
    roles = {"demo_clip_image.onnx": "image_onnx", "demo_clip_text.onnx": "text_onnx"}
    if record is not None:
        files["demo_clip_agreement.json"], roles["demo_clip_agreement.json"] = record, "agreement"
    return ModelRef(id="demo-clip", kind="clip", arch=SPEC.arch, embed_dim=SPEC.embed_dim, files=files, verify=VERIFY,
                    roles=roles, onnx_agreement=dict(SPEC.onnx_agreement), derived_from=SOURCE)


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_fault_is_caught_without_torch_goldens_or_references(case: str, loaded, faithful, tmp_path: Path,
                                                             monkeypatch) -> None:
    towers = FAULTS[case](loaded, tmp_path / "towers")
    assert towers[0].read_bytes() != faithful[0][0].read_bytes() or \
        towers[1].read_bytes() != faithful[0][1].read_bytes()
    # its own honest record, through the whole slim gate
    honest = record_for(loaded, towers, tmp_path / "honest.json")
    rc, statuses, msg = slim_gate(tmp_path, monkeypatch, towers, honest)
    failed = {c for c, s in statuses.items() if s == FAIL}
    assert rc == 1 and failed & {"onnx_agreement.record", "load", "shape_dtype.image", "shape_dtype.text"}, statuses
    # the faithful export's record carried over to these towers: it names other towers
    carried = gate.record_check(_ref(towers, faithful[1]), towers)
    assert carried is not None and carried.status == FAIL and "made for another" in carried.got
    # no record (and no goldens, no reference_sims): refused for lack of proof
    spec = parse_clip("demo-clip", VERIFY)
    assert gate.proof(_ref(towers, None), spec, [], opted_out=False).status == FAIL


@pytest.mark.parametrize("case", sorted(GOOD))
def test_good_variant_with_its_record_passes(case: str, loaded, faithful, tmp_path: Path, monkeypatch) -> None:
    make, agreement = GOOD[case]
    towers = make(loaded, tmp_path / "towers")
    record = record_for(loaded, towers, tmp_path / "agreement.json", agreement or None)
    rc, statuses, msg = slim_gate(tmp_path, monkeypatch, towers, record, agreement or None)
    assert rc == 0 and not {c for c, s in statuses.items() if s == FAIL}, (statuses, msg)
    assert statuses["onnx_agreement.record"] == "pass" and statuses["onnx_proof"] == "pass"
    assert statuses["onnx_agreement.image"] == statuses["onnx_agreement.text"] == "skip"  # no torch here


def test_fp16_round_trip_needs_its_declared_tolerance(loaded, tmp_path: Path, monkeypatch) -> None:
    towers = both(fp16_round_trip)(loaded, tmp_path / "towers")
    record = record_for(loaded, towers, tmp_path / "agreement.json")
    rc, statuses, _ = slim_gate(tmp_path, monkeypatch, towers, record)  # fp32 tolerances
    assert rc == 1 and statuses["onnx_agreement.record"] == FAIL


def test_unproven_towers_are_refused_in_one_line_unless_opted_out(faithful, tmp_path: Path, monkeypatch) -> None:
    rc, statuses, msg = slim_gate(tmp_path, monkeypatch, faithful[0], None)
    assert rc == 1 and statuses["onnx_proof"] == FAIL
    assert "\n" not in msg and "agreement record" in msg and "pin-goldens" in msg and "reference_sims" in msg
    assert "unproven_onnx" in msg
    monkeypatch.setattr(rclip, "torch_clip_available", lambda: False)
    ref = ModelRef(id="demo-clip", kind="clip", arch=SPEC.arch, embed_dim=SPEC.embed_dim,
                   files={"i.onnx": faithful[0][0], "t.onnx": faithful[0][1]},
                   roles={"i.onnx": "image_onnx", "t.onnx": "text_onnx"}, verify=VERIFY,
                   onnx_agreement=dict(SPEC.onnx_agreement), derived_from=SOURCE)
    assert run_gate([ref], clip_path="onnx", unproven_ok=["demo-clip"], report=str(tmp_path / "r.json")) == 0


def test_towers_of_another_source_are_refused_at_load(loaded, tmp_path: Path, monkeypatch) -> None:
    towers = other_training(loaded, tmp_path / "towers")
    rc, statuses, _ = slim_gate(tmp_path, monkeypatch, towers, None)
    assert statuses["load"] == FAIL
    from mlfreeze_runtime.onnx_clip import OnnxClipEmbedder, OnnxClipError

    with pytest.raises(OnnxClipError, match="not from the pinned weights"):
        OnnxClipEmbedder(*towers, providers=["CPUExecutionProvider"], expected_source=SOURCE)
    meta = {p.key: p.value for p in onnx.load(str(towers[0])).metadata_props}
    assert meta[META_SOURCE] != SOURCE


def test_catalogue_bytes_are_really_other_files(loaded, tmp_path: Path) -> None:
    a = fresh(loaded, tmp_path / "a")
    b = both(renamed)(loaded, tmp_path / "b")
    assert a[0].read_bytes() != b[0].read_bytes()
    shutil.rmtree(tmp_path / "a")
