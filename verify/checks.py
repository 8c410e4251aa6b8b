"""Generic embedding checks: pure functions of numpy arrays, one :class:`CheckResult` each.

They know nothing about CLIP or faces, so each is unit-tested on hand-made arrays.
"""

from __future__ import annotations

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


def determinism(model: str, first: Any, second: Any, *, tolerance: float, check: str = "determinism") -> CheckResult:
    import numpy as np

    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if a.shape != b.shape:
        return _result(model, check, False, f"same shape twice {a.shape}", f"{b.shape}")
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    ok = bool(np.isfinite(diff)) and diff <= tolerance
    return _result(model, check, ok, f"max |run1 - run2| <= {tolerance:g}", f"{diff:.3g}")


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
