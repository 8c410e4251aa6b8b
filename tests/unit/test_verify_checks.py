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

