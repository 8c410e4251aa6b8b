"""Generic embedding checks, goldens comparison, zero-shot scoring and cross-device comparison
on hand-made arrays (CPU, no models)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlfreeze_runtime.verify import checks, goldens
from mlfreeze_runtime.verify.clip_checks import zero_shot


def unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_shape_dtype_names_expected_and_got() -> None:
    assert checks.shape_dtype("m", unit(3, 8), rows=3, dim=8).status == "pass"
    bad = checks.shape_dtype("m", unit(3, 8), rows=3, dim=16)
    assert bad.status == "fail" and bad.expected == "(3, 16) float32" and bad.got == "(3, 8) float32"
    assert checks.shape_dtype("m", unit(3, 8).astype(np.float64), rows=3, dim=8).status == "fail"


def test_finite_counts_nan_and_inf() -> None:
    a = unit(2, 4)
    a[0, 1], a[1, 2] = np.nan, np.inf
    r = checks.finite("m", a)
    assert r.status == "fail" and r.got.startswith("2 NaN/Inf")
    assert checks.finite("m", unit(2, 4)).status == "pass"


def test_unit_norm_tolerance_and_nan() -> None:
    assert checks.unit_norm("m", unit(4, 8), tolerance=1e-4).status == "pass"
    assert checks.unit_norm("m", unit(4, 8) * 1.01, tolerance=1e-3).status == "fail"
    z = unit(2, 8)
    z[1] = 0.0  # normalising a zero vector gives zero: not unit
    assert checks.unit_norm("m", z, tolerance=1e-3).status == "fail"
    n = unit(2, 8)
    n[0, 0] = np.nan
    assert checks.unit_norm("m", n, tolerance=1e-3).status == "fail"


def test_non_collapse_catches_near_identical_inputs() -> None:
    a = unit(4, 32)
    assert checks.non_collapse("m", a, list("abcd"), max_cosine=0.9).status == "pass"
    collapsed = np.repeat(unit(1, 32), 4, axis=0) + 1e-4 * unit(4, 32, seed=2)
    r = checks.non_collapse("m", collapsed, list("abcd"), max_cosine=0.9)
    assert r.status == "fail" and " vs " in r.got
    assert checks.non_collapse("m", unit(1, 8), ["a"], max_cosine=0.9).status == "fail"


def test_determinism() -> None:
    a = unit(3, 8)
    assert checks.determinism("m", a, a.copy(), tolerance=0).status == "pass"
    assert checks.determinism("m", a, a + 1e-3, tolerance=1e-5).status == "fail"
    assert checks.determinism("m", a, a[:2], tolerance=1).status == "fail"


def test_compare_devices_finds_the_worst_row() -> None:
    cpu = unit(5, 16)
    acc = cpu.copy()
    ok, worst, idx = checks.compare_devices(cpu, acc + 1e-6, min_cosine=0.999)
    assert ok and worst > 0.999
    acc[3] = unit(1, 16, seed=9)[0]
    ok, worst, idx = checks.compare_devices(cpu, acc, min_cosine=0.999)
    assert not ok and idx == 3 and worst < 0.9
    acc[1, 0] = np.nan
    ok, worst, idx = checks.compare_devices(cpu, acc, min_cosine=0.5)
    assert not ok and idx == 1 and worst == -math.inf
    assert checks.compare_devices(cpu, acc[:4], min_cosine=0.5)[0] is False


def test_cross_device_result_line() -> None:
    cpu = unit(3, 8)
    r = checks.cross_device("m", cpu, -cpu, device="cuda", min_cosine=0.99)
    assert r.status == "fail" and "cuda" in r.expected and "min -1.000000" in r.got


def test_zero_shot_accuracy_and_margin() -> None:
    sims = np.array([[0.30, 0.10, 0.20], [0.05, 0.25, 0.24], [0.10, 0.12, 0.29]])
    top1, margin = zero_shot("m", sims, top1=1.0, margin=0.05, names=["a", "b", "c"])
    assert top1.status == "pass"
    assert margin.status == "fail" and "(b)" in margin.got and "0.0100" in margin.got
    swapped = sims[:, [1, 0, 2]]
    top1, _ = zero_shot("m", swapped, top1=1.0, margin=0.0, names=["a", "b", "c"])
    assert top1.status == "fail" and "missed: a, b" in top1.got


def test_goldens_compare_reports_where() -> None:
    g = {"image/a": [0.1, 0.2], "sims/a": [0.3]}
    assert goldens.compare(g, {"image/a": [0.1, 0.2], "sims/a": [0.3]}) == (0.0, "")
    worst, where = goldens.compare(g, {"image/a": [0.1, 0.25], "sims/a": [0.3]})
    assert worst == pytest.approx(0.05) and where == "image/a[1]"
    assert goldens.compare(g, {"image/a": [0.1, 0.2]})[0] == math.inf
    assert goldens.compare(g, {"image/a": [0.1, float("nan")], "sims/a": [0.3]})[0] == math.inf


def test_golden_check_warns_when_not_pinned(tmp_path) -> None:
    r = goldens.check("m", tmp_path / "nope.json", {"x": [1.0]}, tolerance=1e-3)
    assert r.status == "warn" and "goldens not pinned" in r.got
    path = tmp_path / "m.json"
    goldens.write(path, goldens.document("m", "clip", {"x": [1.0]}, {"device": "cpu"}))
    assert goldens.check("m", path, {"x": [1.0005]}, tolerance=1e-3).status == "pass"
    bad = goldens.check("m", path, {"x": [1.01]}, tolerance=1e-3)
    assert bad.status == "fail" and "x[0]" in bad.got


def test_clip_values_are_compact() -> None:
    v = goldens.clip_values(["a", "b"], unit(2, 512), ["x", "y"], unit(2, 512, seed=1))
    assert set(v) == {"image/a", "image/b", "sims/a", "sims/b", "text/x", "text/y"}
    assert len(v["image/a"]) == goldens.DIMS and len(v["sims/a"]) == 2



# --- every threshold at, just above and just below its edge -----------------------------------
# The value each check computes is read back from the check itself, then the threshold is set to
# exactly that value and to the neighbouring float on either side, so `<` vs `<=` is pinned.

def _edges(v: float) -> tuple[float, float, float]:
    return float(np.nextafter(v, -np.inf)), float(v), float(np.nextafter(v, np.inf))


def test_edges_unit_norm_passes_at_tolerance() -> None:
    a = unit(3, 8, seed=4) * np.array([[1.0], [1.25], [0.9]], dtype=np.float32)
    v = float(np.max(np.abs(np.linalg.norm(a.astype(np.float64), axis=1) - 1)))
    below, at, above = _edges(v)
    assert [checks.unit_norm("m", a, tolerance=t).status for t in (below, at, above)] == ["fail", "pass", "pass"]


def test_edges_raw_norm_passes_at_minimum() -> None:
    a = unit(3, 8, seed=5) * np.array([[3.0], [0.5], [2.0]], dtype=np.float32)
    v = float(np.min(np.linalg.norm(a.astype(np.float64), axis=1)))
    below, at, above = _edges(v)
    assert [checks.raw_norm("m", a, min_norm=t).status for t in (below, at, above)] == ["pass", "pass", "fail"]
    dead = a.copy()
    dead[1] = 0.0  # a dead output: what normalisation would hide
    assert checks.raw_norm("m", dead, min_norm=1e-6).status == "fail"


def test_edges_non_collapse_fails_at_maximum() -> None:
    a = unit(4, 16, seed=6)
    sims = checks.cosine_matrix(a, a)
    np.fill_diagonal(sims, -np.inf)
    below, at, above = _edges(float(sims.max()))
    assert [checks.non_collapse("m", a, list("abcd"), max_cosine=t).status
            for t in (below, at, above)] == ["fail", "fail", "pass"]


def test_edges_determinism_passes_at_tolerance() -> None:
    a = unit(3, 8).astype(np.float64)
    b = a.copy()
    b[1, 2] += 0.003
    v = float(np.max(np.abs(a - b)))
    below, at, above = _edges(v)
    assert [checks.determinism("m", a, b, tolerance=t).status for t in (below, at, above)] == ["fail", "pass", "pass"]
    assert checks.determinism("m", np.zeros((0, 3)), np.zeros((0, 3)), tolerance=1).status == "fail"  # nothing ran


def test_edges_cross_device_passes_at_minimum() -> None:
    a = unit(3, 8)
    b = a + 0.05 * unit(3, 8, seed=9)
    _, worst, _ = checks.compare_devices(a, b, min_cosine=0.0)
    below, at, above = _edges(worst)
    assert [checks.cross_device("m", a, b, device="cuda", min_cosine=t).status
            for t in (below, at, above)] == ["pass", "pass", "fail"]


def test_edges_within_includes_both_ends() -> None:
    v = 0.3
    below, at, above = _edges(v)
    lows = [checks.within("m", "c", v, (lo, 1.0), what="x").status for lo in (below, at, above)]
    highs = [checks.within("m", "c", v, (-1.0, hi), what="x").status for hi in (below, at, above)]
    assert lows == ["pass", "pass", "fail"] and highs == ["fail", "pass", "pass"]
    assert checks.within("m", "c", float("nan"), (-1.0, 1.0), what="x").status == "fail"


def test_edges_paraphrase_margin_is_strict() -> None:
    caps, paras = unit(4, 16, seed=1), unit(4, 16, seed=1) + 0.3 * unit(4, 16, seed=2)
    sims = checks.cosine_matrix(caps, paras)
    gaps = np.diag(sims) - np.where(np.eye(4, dtype=bool), -np.inf, sims).max(axis=1)
    below, at, above = _edges(float(gaps.min()))
    assert [checks.paraphrase_margin("m", caps, paras, list("abcd"), margin=t).status
            for t in (below, at, above)] == ["pass", "fail", "fail"]


def test_paraphrase_margin_fails_a_random_text_tower() -> None:
    """Built to fail: unrelated random 'paraphrases' (a random text tower's view of the pairs)."""
    caps, paras = unit(6, 64, seed=11), unit(6, 64, seed=12)
    r = checks.paraphrase_margin("m", caps, paras, list("abcdef"), margin=0.0)
    assert r.status == "fail" and "/6 pairs" in r.got


def test_paraphrase_distractors_count_as_rivals() -> None:
    caps = unit(2, 16, seed=3)
    paras = caps + 0.5 * unit(2, 16, seed=4)
    assert checks.paraphrase_margin("m", caps, paras, ["a", "b"], margin=0.0).status == "pass"
    # an unrelated caption nearer than the paraphrase: the pair fails
    r = checks.paraphrase_margin("m", caps, paras, ["a", "b"], margin=0.0, distractors=caps[:1] * 1.0)
    assert r.status == "fail" and "'a'" in r.got


def test_edges_zero_shot_top1_and_margin_pass_at_threshold() -> None:
    sims = np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.1], [0.1, 0.7, 0.6]])  # 2 of 3 right
    acc = 2 / 3
    below, at, above = _edges(acc)
    assert [zero_shot("m", sims, top1=t, margin=-9, names=list("abc"))[0].status
            for t in (below, at, above)] == ["pass", "pass", "fail"]
    ok = np.array([[0.9, 0.2], [0.3, 0.8]])
    gap = float(min(0.9 - 0.2, 0.8 - 0.3))
    below, at, above = _edges(gap)
    assert [zero_shot("m", ok, top1=1.0, margin=t, names=list("ab"))[1].status
            for t in (below, at, above)] == ["pass", "pass", "fail"]


def test_edges_golden_passes_at_tolerance(tmp_path) -> None:
    path = tmp_path / "g.json"
    goldens.write(path, goldens.document("m", "clip", {"a": [0.5, 0.25]}, {}))
    v = abs(0.25 - 0.2501)
    below, at, above = _edges(v)
    assert [goldens.check("m", path, {"a": [0.5, 0.2501]}, tolerance=t).status
            for t in (below, at, above)] == ["fail", "pass", "pass"]
