"""Proof that an exported CLIP says what the torch CLIP says: ``onnx_agreement.image`` / ``.text``.

Each tower is judged on its own, on the model's probes (the ``zero_shot`` images and captions of
``[models.<id>.verify]`` plus the ``text_triples`` captions):

* cosine between the torch and the ONNX embedding of every probe: the minimum must reach
  ``min_cosine`` (fp32: 0.99999);
* rankings: for every probe image, the top-``k`` captions ranked by torch-image x torch-text and
  by ONNX-image x torch-text must be the same list (image tower); for every caption, the top-``k``
  images ranked by torch-text x torch-image and ONNX-text x torch-image (text tower).

Tolerances come from ``[models.<id>.onnx_agreement]`` (all optional)::

    precision = "fp32"      # fp32 | fp16 | int8: the declared precision of the export
    min_cosine = 0.99999    # fp32 may only be stricter; looser values need a reduced precision
    top_k = 5               # capped at the number of probes

A wrong activation (GELU for QuickGELU), a dropped final LayerNorm or projection, or a drifted
weight fails here (tests/integration/test_slim_onnx_checks.py exports such faults on purpose).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlfreeze_runtime.verify.result import FAIL, PASS, CheckResult, ModelRef

PRECISIONS = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.99}  # precision -> loosest allowed min_cosine
DEFAULT_TOP_K = 5
CHECK_IMAGE, CHECK_TEXT = "onnx_agreement.image", "onnx_agreement.text"


class AgreementSpecError(ValueError):
    """``[models.<id>.onnx_agreement]`` is malformed; the message names the dotted key."""


@dataclass(frozen=True, kw_only=True)
class Tolerances:
    precision: str = "fp32"
    min_cosine: float = PRECISIONS["fp32"]
    top_k: int = DEFAULT_TOP_K


def tolerances(raw: Mapping[str, Any], where: str = "onnx_agreement") -> Tolerances:
    """Validate a raw ``onnx_agreement`` table (unknown keys, types, a min_cosine looser than its precision)."""
    unknown = sorted(set(raw) - {"precision", "min_cosine", "top_k"})
    if unknown:
        raise AgreementSpecError(f"{where}.{unknown[0]} is not a known key (precision, min_cosine, top_k)")
    precision = raw.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise AgreementSpecError(f"{where}.precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    floor = PRECISIONS[precision]
    min_cos = raw.get("min_cosine", floor)
    if isinstance(min_cos, bool) or not isinstance(min_cos, (int, float)) or not 0 < min_cos <= 1:
        raise AgreementSpecError(f"{where}.min_cosine must be a number in (0, 1] (got {min_cos!r})")
    if min_cos < floor:
        raise AgreementSpecError(f"{where}.min_cosine {min_cos} is looser than {precision} allows ({floor}); "
                                 "declare a reduced precision to loosen it")
    top_k = raw.get("top_k", DEFAULT_TOP_K)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise AgreementSpecError(f"{where}.top_k must be a positive integer (got {top_k!r})")
    return Tolerances(precision=precision, min_cosine=float(min_cos), top_k=top_k)


def _rows_cosine(a: Any, b: Any) -> Any:
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na * nb, 1e-30)


def _topk(sims: Any, k: int) -> list[list[int]]:
    import numpy as np

    return [list(row) for row in np.argsort(-np.asarray(sims, dtype=np.float64), axis=1, kind="stable")[:, :k]]


def _judge(model: str, check: str, tol: Tolerances, ref_emb: Any, new_emb: Any, ref_rank: Any, new_rank: Any,
           names: Sequence[str], what: str, seconds: float) -> CheckResult:
    import numpy as np

    expected = (f"{tol.precision} min cosine >= {tol.min_cosine:g} torch vs ONNX over {len(names)} {what}, "
                f"identical top-{tol.top_k} rankings")
    if np.shape(ref_emb) != np.shape(new_emb):
        return CheckResult(model=model, check=check, status=FAIL, expected=expected,
                           got=f"shapes differ: torch {np.shape(ref_emb)}, ONNX {np.shape(new_emb)}", seconds=seconds)
    if not np.isfinite(new_emb).all():
        return CheckResult(model=model, check=check, status=FAIL, expected=expected,
                           got="ONNX embeddings hold NaN or Inf", seconds=seconds)
    cos = _rows_cosine(ref_emb, new_emb)
    worst = int(np.argmin(cos))
    k = min(tol.top_k, np.shape(ref_rank)[1])
    a, b = _topk(ref_rank, k), _topk(new_rank, k)
    moved = [names[i] for i in range(len(a)) if a[i] != b[i]]
    ok = float(cos[worst]) >= tol.min_cosine and not moved
    got = f"min cosine {float(cos[worst]):.7f} ({names[worst]})"
    got += f"; top-{k} ranking differs for {len(moved)}: {', '.join(moved[:3])}" if moved else f"; top-{k} identical"
    return CheckResult(model=model, check=check, status=PASS if ok else FAIL, expected=expected, got=got,
                       seconds=seconds)


def agreement(model: str, torch_emb: Any, onnx_emb: Any, images: Sequence[Any], image_names: Sequence[str],
              captions: Sequence[str], tol: Tolerances | None = None) -> list[CheckResult]:
    """Compare two embedders (``images(rgb)``, ``texts(captions)``, un-normalised outputs) tower by tower."""
    tol = tol or Tolerances()
    t0 = time.perf_counter()
    ti, oi = torch_emb.images(images, normalize=False), onnx_emb.images(images, normalize=False)
    tt, ot = torch_emb.texts(captions, normalize=False), onnx_emb.texts(captions, normalize=False)
    seconds = time.perf_counter() - t0

    import numpy as np

    def unit(x: Any) -> Any:
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)

    tin, tt_n = unit(ti), unit(tt)
    if np.shape(oi)[1:] == np.shape(ti)[1:]:
        img_ref, img_new = tin @ tt_n.T, unit(oi) @ tt_n.T
    else:
        img_ref = img_new = np.zeros((len(images), 1))
    if np.shape(ot)[1:] == np.shape(tt)[1:]:
        txt_ref, txt_new = tt_n @ tin.T, unit(ot) @ tin.T
    else:
        txt_ref = txt_new = np.zeros((len(captions), 1))
    return [_judge(model, CHECK_IMAGE, tol, ti, oi, img_ref, img_new, list(image_names), "probe images", seconds),
            _judge(model, CHECK_TEXT, tol, tt, ot, txt_ref, txt_new, list(captions), "probe captions", seconds)]


def probes(verify: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(image probe names, captions) of a raw verify table: zero-shot images and captions + text_triples."""
    shots = list(verify.get("zero_shot", ()))
    names = [str(z["image"]) for z in shots]
    captions = [str(z["caption"]) for z in shots]
    for triple in verify.get("text_triples", ()):
        captions += [str(c) for c in triple if str(c) not in captions]
    return names, captions


def run(ref: ModelRef, image_onnx: Path, text_onnx: Path, *, raw_tolerances: Mapping[str, Any] | None = None,
        probes_dir: Path | None = None, providers: Sequence[str] | None = None) -> list[CheckResult]:
    """Load the torch CLIP (strictly, from ``ref``'s weights/config) and the ONNX towers; compare them."""
    from mlfreeze_runtime.clip import ClipEmbedder, ClipLoadError, load_clip
    from mlfreeze_runtime.onnx_clip import OnnxClipEmbedder, OnnxClipError
    from mlfreeze_runtime.verify.probes import load_rgb

    mid = ref.id
    try:
        tol = tolerances(raw_tolerances or {}, f"models.{mid}.onnx_agreement")
    except AgreementSpecError as exc:
        return [CheckResult(model=mid, check=c, status=FAIL, expected="a valid onnx_agreement table", got=str(exc))
                for c in (CHECK_IMAGE, CHECK_TEXT)]
    weights = [n for n, r in ref.roles.items() if r == "weights"]
    configs = [n for n, r in ref.roles.items() if r == "config"]
    try:
        if len(weights) != 1:
            raise ClipLoadError(f"expected one artifact with role 'weights' among {sorted(ref.roles)}")
        loaded = load_clip(arch=ref.arch, weights=Path(ref.files[weights[0]]),
                           config=Path(ref.files[configs[0]]) if configs else None,
                           declared_quick_gelu=bool(ref.verify.get("quick_gelu", False)))
        onnx_emb = OnnxClipEmbedder(image_onnx, text_onnx, providers=providers)
    except (ClipLoadError, OnnxClipError) as exc:
        return [CheckResult(model=mid, check=c, status=FAIL, expected="torch and ONNX CLIP load", got=str(exc))
                for c in (CHECK_IMAGE, CHECK_TEXT)]
    names, captions = probes(ref.verify)
    images = [load_rgb(n, probes_dir) for n in names]
    return agreement(mid, ClipEmbedder(loaded, "cpu"), onnx_emb, images, names, captions, tol)
