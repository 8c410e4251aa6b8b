"""The agreement record judged without torch: it must name exactly the towers it is given, the pinned
source, and measurements within the model's current tolerances; the tolerance table's edges; the
proof check and the release-side test of a bundle's models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlfreeze_runtime.verify import agreement_record as ar
from mlfreeze_runtime.verify import onnx_checks
from mlfreeze_runtime.verify.onnx_checks import Tolerances, TowerAgreement, tolerances

SOURCE = "m@" + "a" * 64


def _towers(tmp_path: Path) -> tuple[Path, Path]:
    image, text = tmp_path / "image.onnx", tmp_path / "text.onnx"
    image.write_bytes(b"image tower bytes")
    text.write_bytes(b"text tower bytes")
    return image, text


def _record(tmp_path: Path, image: Path, text: Path, *, image_cos: float = 1.0, text_cos: float = 1.0,
            moved: tuple[str, ...] = (), providers: tuple[str, ...] = ("CPUExecutionProvider",),
            source: str = SOURCE, model: str = "m") -> Path:
    meas = {"image": TowerAgreement(tower="image", probes=18, min_cosine=image_cos, worst="a", top_k=5,
                                    candidates=18, moved=moved),
            "text": TowerAgreement(tower="text", probes=18, min_cosine=text_cos, worst="b", top_k=5, candidates=18)}
    doc = ar.document(model=model, derived_from=source, image=image, text=text, measurements=meas,
                      tolerances={}, providers=providers, versions={"torch": "2.x", "open_clip": "3.x"},
                      options={"opset": 17}, probe_images=["a"], captions=["b"])
    return ar.write(tmp_path / "agreement.json", doc)


def _check(path: Path, image: Path, text: Path, raw: dict | None = None, source: str = SOURCE):
    return ar.check("m", path, image=image, text=text, derived_from=source, raw_tolerances=raw or {})


def test_a_record_of_these_towers_passes_and_names_its_numbers(tmp_path: Path) -> None:
    image, text = _towers(tmp_path)
    r = _check(_record(tmp_path, image, text), image, text)
    assert r.status == "pass" and r.check == "onnx_agreement.record"
    assert "image min cosine 1.0000000" in r.got and "torch 2.x" in r.got


@pytest.mark.parametrize("tower", ["image", "text"])
def test_a_record_of_other_towers_is_refused(tmp_path: Path, tower: str) -> None:
    image, text = _towers(tmp_path)
    record = _record(tmp_path, image, text)
    (image if tower == "image" else text).write_bytes(b"a spoiled tower")
    r = _check(record, image, text)
    assert r.status == "fail" and f"made for another {tower} tower" in r.got and "mlfreeze export" in r.got


def test_a_record_of_another_source_or_model_is_refused(tmp_path: Path) -> None:
    image, text = _towers(tmp_path)
    r = _check(_record(tmp_path, image, text, source="m@" + "b" * 64), image, text)
    assert r.status == "fail" and "records source" in r.got
    r = _check(_record(tmp_path, image, text, model="other"), image, text)
    assert r.status == "fail" and "record of model 'other'" in r.got


def test_the_current_tolerances_judge_the_recorded_numbers_at_their_edge(tmp_path: Path) -> None:
    import numpy as np

    image, text = _towers(tmp_path)
    bar = onnx_checks.PRECISIONS["fp32"]
    assert _check(_record(tmp_path, image, text, text_cos=bar), image, text).status == "pass"  # passes at the bar
    below = float(np.nextafter(bar, 0))
    r = _check(_record(tmp_path, image, text, text_cos=below), image, text)
    assert r.status == "fail" and "text tower disagreeing" in r.got
    # a 2 % perturbation of one image weight matrix measured 0.9999961: under the fp32 bar, within fp16's
    r = _check(_record(tmp_path, image, text, image_cos=0.9999961), image, text)
    assert r.status == "fail"
    assert _check(_record(tmp_path, image, text, image_cos=0.9999961), image, text,
                  raw={"precision": "fp16"}).status == "pass"
    r = _check(_record(tmp_path, image, text, moved=("a",)), image, text)
    assert r.status == "fail" and "ranking differs" in r.got


def test_a_record_made_on_a_gpu_provider_is_judged_by_the_accelerator_bar(tmp_path: Path) -> None:
    image, text = _towers(tmp_path)
    gpu = ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert _check(_record(tmp_path, image, text, image_cos=0.99995, providers=gpu), image, text).status == "pass"
    assert _check(_record(tmp_path, image, text, image_cos=0.99995), image, text).status == "fail"
    raw = {"accelerator_min_cosine": 0.99999}
    assert _check(_record(tmp_path, image, text, image_cos=0.99995, providers=gpu), image, text, raw).status == "fail"


@pytest.mark.parametrize("content", ["not json", "[]", '{"schema_version": 1}', '{"schema_version": 2}'])
def test_an_unreadable_record_fails_in_one_line(tmp_path: Path, content: str) -> None:
    image, text = _towers(tmp_path)
    (tmp_path / "agreement.json").write_text(content)
    r = _check(tmp_path / "agreement.json", image, text)
    assert r.status == "fail" and "\n" not in r.got


def test_tolerance_table_defaults_and_refusals() -> None:
    assert tolerances({}) == Tolerances(min_cosine=0.999999, accelerator_min_cosine=0.9999)
    assert tolerances({"precision": "fp16"}).min_cosine == 0.999
    with pytest.raises(onnx_checks.AgreementSpecError, match="looser than fp32"):
        tolerances({"min_cosine": 0.99999})
    with pytest.raises(onnx_checks.AgreementSpecError, match="accelerator_min_cosine"):
        tolerances({"accelerator_min_cosine": 1.5})
    with pytest.raises(onnx_checks.AgreementSpecError, match="not a known key"):
        tolerances({"min_cos": 0.9})


def test_backs_towers_compares_both_digests(tmp_path: Path) -> None:
    image, text = _towers(tmp_path)
    doc = json.loads(_record(tmp_path, image, text).read_text())
    digests = {"image": ar.sha256_file(image), "text": ar.sha256_file(text)}
    assert ar.backs_towers(doc, digests)
    assert not ar.backs_towers(doc, {**digests, "text": "0" * 64})
    assert not ar.backs_towers({}, digests)


def test_near_ties_may_swap_only_under_a_declared_reduced_precision(tmp_path: Path) -> None:
    image, text = _towers(tmp_path)
    meas = TowerAgreement(tower="text", probes=18, min_cosine=0.9999998, top_k=5, candidates=18, moved=("c",),
                          moved_gap=1e-4)
    assert not meas.verdict(Tolerances())[0]  # fp32 on the CPU: rankings must be identical
    fp16 = tolerances({"precision": "fp16"})
    assert meas.verdict(fp16)[0]  # a swap of candidates 1e-4 apart is within fp16's noise
    assert onnx_checks.tie_gap(fp16) == pytest.approx(2 * (2 * 0.001) ** 0.5)
    wide = TowerAgreement(tower="text", probes=18, min_cosine=0.9999998, top_k=5, candidates=18, moved=("c",),
                          moved_gap=0.2)
    assert not wide.verdict(fp16)[0]
