"""Golden outputs: compact pinned reference values per model, recorded on the CPU.

A golden file (``src/mlfreeze/specs/goldens/<id>.json``, ``models/<id>/golden.json`` in a bundle) is

    {"schema_version": 1, "model": "<id>", "kind": "clip", "recorded_on": {...},
     "values": {"<key>": [float, ...], ...}}

with keys such as ``image/<probe>`` (first :data:`DIMS` embedding values), ``text/<caption>``,
``sims/<probe>`` (cosine of that image with every zero-shot caption), ``faces/<probe>/count``,
``faces/<probe>/<i>/box`` (box / image width) and ``faces/<probe>/<i>/emb``. Comparison is the
largest absolute difference over every value, so any change to weights or preprocessing that
moves an output by more than the declared ``golden_tolerance`` fails, wherever it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlfreeze_runtime.verify.result import FAIL, PASS, WARN, CheckResult

SCHEMA_VERSION = 1
DIMS = 16
DECIMALS = 6

Values = dict[str, list[float]]


def rounded(values: Any) -> list[float]:
    return [round(float(v), DECIMALS) if math.isfinite(float(v)) else float("nan") for v in values]


def clip_values(image_names: Sequence[str], image_emb: Any, captions: Sequence[str], text_emb: Any) -> Values:
    import numpy as np

    img = np.asarray(image_emb, dtype=np.float64)
    txt = np.asarray(text_emb, dtype=np.float64)
    sims = img @ txt.T
    out: Values = {}
    for i, name in enumerate(image_names):
        out[f"image/{name}"] = rounded(img[i, :DIMS])
        out[f"sims/{name}"] = rounded(sims[i])
    for j, cap in enumerate(captions):
        out[f"text/{cap}"] = rounded(txt[j, :DIMS])
    return out


def face_values(per_probe: Mapping[str, Sequence[tuple[Any, float, Any]]], widths: Mapping[str, int]) -> Values:
    """``per_probe[name]`` = [(box x1y1x2y2, det_score, normed embedding), ...] in detection order."""
    out: Values = {}
    for name, faces in per_probe.items():
        out[f"faces/{name}/count"] = [float(len(faces))]
        order = sorted(range(len(faces)), key=lambda i: (round(float(faces[i][0][1]) / 8), float(faces[i][0][0])))
        for rank, i in enumerate(order):
            box, score, emb = faces[i]
            out[f"faces/{name}/{rank}/box"] = rounded([float(v) / widths[name] for v in box])
            out[f"faces/{name}/{rank}/score"] = rounded([score])
            out[f"faces/{name}/{rank}/emb"] = rounded(list(emb)[:DIMS])
    return out


def document(model: str, kind: str, values: Values, recorded_on: Mapping[str, Any]) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "model": model, "kind": kind,
            "recorded_on": dict(recorded_on), "values": values}


def write(path: Path, doc: Mapping[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, allow_nan=True) + "\n")
    tmp.replace(path)


def read(path: Path) -> dict[str, Any] | None:
    """The golden document, or None when there is none (not pinned)."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION or "values" not in doc:
        raise ValueError(f"{path}: not a golden file of schema_version {SCHEMA_VERSION}")
    return doc


def compare(golden: Mapping[str, Sequence[float]], current: Mapping[str, Sequence[float]]) -> tuple[float, str]:
    """Largest |golden - current| over all values and where; missing keys or lengths count as inf."""
    worst, where = 0.0, ""
    for key in sorted(set(golden) | set(current)):
        a, b = golden.get(key), current.get(key)
        if a is None or b is None or len(a) != len(b):
            return math.inf, f"{key} ({'missing now' if b is None else 'not in golden' if a is None else 'length'})"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = abs(float(x) - float(y))
            if not math.isfinite(d):
                d = 0.0 if (math.isnan(float(x)) and math.isnan(float(y))) else math.inf
            if d > worst:
                worst, where = d, f"{key}[{i}]"
    return worst, where


def check(model: str, path: Path | None, current: Values, *, tolerance: float) -> CheckResult:
    name = "golden"
    doc = read(path) if path is not None else None
    if doc is None:
        return CheckResult(model=model, check=name, status=WARN, expected="pinned golden outputs",
                           got="goldens not pinned (run mlfreeze verify --pin-goldens on the CPU)")
    worst, where = compare(doc["values"], current)
    ok = worst <= tolerance
    got = f"max |delta| = {worst:.3g}" + (f" at {where}" if where else "")
    return CheckResult(model=model, check=name, status=PASS if ok else FAIL,
                       expected=f"max |delta| <= {tolerance:g} vs {Path(str(path)).name}", got=got)
