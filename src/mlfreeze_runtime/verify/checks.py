"""Generic embedding checks: pure functions of numpy arrays, one :class:`CheckResult` each.

They know nothing about CLIP or faces, so each is unit-tested on hand-made arrays, at, just
above and just below its threshold. The comparison at the edge is part of the contract:

=================  =========================================  ===================
check              passes when                                at the threshold
=================  =========================================  ===================
shape_dtype        shape == (rows, dim) and dtype float32     (exact)
finite             no NaN/Inf                                 (exact)
raw_norm           every raw (pre-normalisation) norm >= min  passes
unit_norm          max abs(norm - 1) <= tolerance             passes
non_collapse       max cosine between distinct inputs < max   fails
determinism        max abs(run1 - run2) <= tolerance          passes
cross_device       min row cosine >= min_cosine               passes
within             lo <= value <= hi                          passes
paraphrase_margin  min gap > margin                           fails
=================  =========================================  ===================
"""

from __future__ import annotations

import math
from typing import Any

from mlfreeze_runtime.verify.result import FAIL, PASS, CheckResult


def _result(model: str, check: str, ok: bool, expected: str, got: str) -> CheckResult:
    return CheckResult(model=model, check=check, status=PASS if ok else FAIL, expected=expected, got=got)


def shape_dtype(model: str, emb: Any, *, rows: int, dim: int, check: str = "shape_dtype") -> CheckResult:
    import numpy as np

    arr = np.asarray(emb)
    got = f"{tuple(arr.shape)} {arr.dtype}"
    ok = arr.shape == (rows, dim) and arr.dtype == np.float32
    return _result(model, check, ok, f"({rows}, {dim}) float32", got)


def finite(model: str, emb: Any, *, check: str = "finite") -> CheckResult:
    import numpy as np

    arr = np.asarray(emb, dtype=np.float64)
    bad = int((~np.isfinite(arr)).sum())
    return _result(model, check, bad == 0, "all values finite", f"{bad} NaN/Inf of {arr.size}")


def unit_norm(model: str, emb: Any, *, tolerance: float, check: str = "unit_norm") -> CheckResult:
    import numpy as np

    arr = np.asarray(emb, dtype=np.float64)
    norms = np.linalg.norm(arr.reshape(len(arr), -1), axis=1) if arr.size else np.zeros(0)
    worst = float(np.nanmax(np.abs(norms - 1.0))) if norms.size and np.isfinite(norms).any() else float("nan")
    ok = bool(norms.size) and bool(np.all(np.isfinite(norms))) and worst <= tolerance
    return _result(model, check, ok, f"|norm - 1| <= {tolerance:g}", f"max |norm - 1| = {worst:.3g}")


def raw_norm(model: str, raw: Any, *, min_norm: float, check: str = "raw_norm") -> CheckResult:
    """The model's own outputs, BEFORE the embedder normalises them, must not be (near) zero:
    a dead layer or zeroed projection gives norm 0, which normalisation would turn into NaN or noise."""
    import numpy as np

    arr = np.asarray(raw, dtype=np.float64)
    norms = np.linalg.norm(arr.reshape(len(arr), -1), axis=1) if arr.size else np.zeros(0)
    low = float(np.min(norms)) if norms.size else float("nan")
    ok = bool(norms.size) and bool(np.all(np.isfinite(norms))) and low >= min_norm
    return _result(model, check, ok, f"every raw output norm >= {min_norm:g} (before normalisation)",
                   f"min {low:.4g}, max {float(np.max(norms)) if norms.size else float('nan'):.4g}")


def within(model: str, check: str, value: float, band: tuple[float, float], *, what: str) -> CheckResult:
    """``lo <= value <= hi`` (both edges included); NaN fails."""
    lo, hi = band
    ok = math.isfinite(value) and lo <= value <= hi
    return _result(model, check, ok, f"{what} in [{lo:g}, {hi:g}]", f"{value:.4f}")


def paraphrase_margin(model: str, captions: Any, paraphrases: Any, names: list[str], *, margin: float,
                      distractors: Any = None, check: str = "text_paraphrase") -> CheckResult:
    """Each caption must be nearer its own paraphrase than every other pair's paraphrase (and every
    extra ``distractors`` row), by more than ``margin``:
    gap_i = cos(c_i, p_i) - max(max_{j != i} cos(c_i, p_j), max_k cos(c_i, d_k)) > margin for every i.

    With n pairs a model with random text embeddings passes with probability about (1/n)^n at
    margin 0 (each caption's own paraphrase must win among n), so 6 pairs leave it ~2e-5.
    """
    import numpy as np

    sims = cosine_matrix(captions, paraphrases)
    n = len(sims)
    extra = 0 if distractors is None else len(distractors)
    if n + extra < 2 or sims.shape != (n, n):
        return _result(model, check, False, "at least 2 caption/paraphrase pairs", f"{sims.shape}")
    others = np.where(np.eye(n, dtype=bool), -np.inf, sims).max(axis=1)
    if distractors is not None and len(distractors):
        others = np.maximum(others, cosine_matrix(captions, distractors).max(axis=1))
    gaps = np.diag(sims) - others
    gaps = np.where(np.isfinite(gaps), gaps, -np.inf)
    worst = int(np.argmin(gaps))
    ok = bool(gaps[worst] > margin)
    return _result(model, check, ok,
                   f"cos(caption, its paraphrase) - cos(caption, best other paraphrase) > {margin:g} for all {n}",
                   f"min {float(gaps[worst]):.4f} ({names[worst]!r}), {int((gaps > margin).sum())}/{n} pairs")


def cosine_matrix(a: Any, b: Any) -> Any:
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return an @ bn.T


def non_collapse(model: str, emb: Any, labels: list[str], *, max_cosine: float,
                 check: str = "non_collapse") -> CheckResult:
    """Distinct inputs must not map to (nearly) the same embedding."""
    import numpy as np

    arr = np.asarray(emb, dtype=np.float64)
    if len(arr) < 2:
        return _result(model, check, False, "at least 2 distinct inputs", f"{len(arr)}")
    sims = cosine_matrix(arr, arr)
    np.fill_diagonal(sims, -np.inf)
    i, j = np.unravel_index(int(np.nanargmax(np.nan_to_num(sims, nan=np.inf))), sims.shape)
    worst = float(sims[i, j])
    ok = bool(np.isfinite(worst)) and worst < max_cosine
    return _result(model, check, ok, f"max cosine between distinct inputs < {max_cosine:g}",
                   f"{worst:.4f} ({labels[i]} vs {labels[j]})")


def determinism(model: str, first: Any, second: Any, *, tolerance: float, check: str = "determinism",
                what: str = "run1 - run2") -> CheckResult:
    """Two computations of the same outputs agree: ``max |first - second| <= tolerance``.

    The callers make the two computations differ in what a fault would change: a batch versus
    one input at a time (batch-dependent layers, padding leaks), a second load of the model from
    its files in a fresh session (anything initialised at random instead of loaded)."""
    import numpy as np

    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or not a.size:
        return _result(model, check, False, f"same shape twice {a.shape}", f"{b.shape}")
    diff = float(np.max(np.abs(a - b)))
    ok = bool(np.isfinite(diff)) and diff <= tolerance
    return _result(model, check, ok, f"max |{what}| <= {tolerance:g}", f"{diff:.3g}")


def compare_devices(reference: Any, other: Any, *, min_cosine: float) -> tuple[bool, float, int]:
    """Row-wise cosine between CPU (``reference``) and accelerator embeddings.

    Returns (ok, worst cosine, index of the worst row). Shapes must match; NaN counts as a failure.
    """
    import numpy as np

    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or not len(a):
        return False, float("nan"), -1
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    cos = np.sum(an * bn, axis=1)
    cos = np.where(np.isfinite(cos), cos, -np.inf)
    idx = int(np.argmin(cos))
    worst = float(cos[idx])
    return worst >= min_cosine, worst, idx


def cross_device(model: str, reference: Any, other: Any, *, device: str, min_cosine: float,
                 check: str = "cross_device") -> CheckResult:
    ok, worst, idx = compare_devices(reference, other, min_cosine=min_cosine)
    return _result(model, check, ok, f"cosine(cpu, {device}) >= {min_cosine:g} for every input",
                   f"min {worst:.6f} (input {idx})")
