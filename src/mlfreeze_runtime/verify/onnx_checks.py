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
    min_cosine = 0.999999   # fp32 may only be stricter; looser values need a reduced precision
    accelerator_min_cosine = 0.9999  # the bar when onnxruntime runs the towers on a GPU provider
    top_k = 5               # capped at the number of probes

Why 0.999999 for fp32 on the CPU: every faithful export measured (other opsets, an onnxruntime-
optimised graph, renamed nodes, a fresh export) agrees at 1.0000000, while a 2 % perturbation of
one weight matrix agrees at 0.9999961 (docs/benchmarks.md, bench/bench_onnx_tolerances.py).
The measurements (:class:`TowerAgreement`) are also what an agreement record keeps
(:mod:`mlfreeze_runtime.verify.agreement_record`), so a slim-only build judges them without torch.

A wrong activation (GELU for QuickGELU), a dropped final LayerNorm or projection, or a drifted
weight fails here (tests/integration/test_slim_onnx_checks.py exports such faults on purpose).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlfreeze_runtime.verify.result import FAIL, PASS, CheckResult, ModelRef

PRECISIONS = {"fp32": 0.999999, "fp16": 0.999, "int8": 0.99}  # precision -> loosest allowed min_cosine
# the bar when the ONNX session runs on an accelerator provider (TF32 / reduced-precision kernels on the
# GPU against torch on the CPU); `accelerator_min_cosine` declares another
ACCELERATOR_MIN_COSINE = {"fp32": 0.9999, "fp16": 0.998, "int8": 0.99}
DEFAULT_TOP_K = 5
CHECK_IMAGE, CHECK_TEXT = "onnx_agreement.image", "onnx_agreement.text"
CPU_PROVIDER = "CPUExecutionProvider"
KEYS = ("precision", "min_cosine", "top_k", "accelerator_min_cosine")


class AgreementSpecError(ValueError):
    """``[models.<id>.onnx_agreement]`` is malformed; the message names the dotted key."""


@dataclass(frozen=True, kw_only=True)
class Tolerances:
    precision: str = "fp32"
    min_cosine: float = PRECISIONS["fp32"]
    top_k: int = DEFAULT_TOP_K
    accelerator_min_cosine: float = ACCELERATOR_MIN_COSINE["fp32"]

    def bar(self, providers: Sequence[str] = ()) -> float:
        """The min cosine for sessions on ``providers``: the accelerator bar when the first is not the CPU."""
        accelerated = bool(providers) and providers[0] != CPU_PROVIDER
        return self.accelerator_min_cosine if accelerated else self.min_cosine


def _cosine(raw: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise AgreementSpecError(f"{where}.{key} must be a number in (0, 1] (got {value!r})")
    return float(value)


def tolerances(raw: Mapping[str, Any], where: str = "onnx_agreement") -> Tolerances:
    """Validate a raw ``onnx_agreement`` table (unknown keys, types, a min_cosine looser than its precision)."""
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise AgreementSpecError(f"{where}.{unknown[0]} is not a known key ({', '.join(KEYS)})")
    precision = raw.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise AgreementSpecError(f"{where}.precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    floor = PRECISIONS[precision]
    min_cos = _cosine(raw, "min_cosine", where, floor)
    if min_cos < floor:
        raise AgreementSpecError(f"{where}.min_cosine {min_cos} is looser than {precision} allows ({floor}); "
                                 "declare a reduced precision to loosen it")
    accel = _cosine(raw, "accelerator_min_cosine", where, min(min_cos, ACCELERATOR_MIN_COSINE[precision]))
    top_k = raw.get("top_k", DEFAULT_TOP_K)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise AgreementSpecError(f"{where}.top_k must be a positive integer (got {top_k!r})")
    return Tolerances(precision=precision, min_cosine=min_cos, top_k=top_k, accelerator_min_cosine=accel)


@dataclass(frozen=True, kw_only=True)
class TowerAgreement:
    """What one tower measured against torch: what an agreement record keeps and the checks judge.

    ``min_cosine`` is the smallest torch-vs-ONNX cosine over ``probes`` inputs (``worst`` names the
    input; NaN when the outputs cannot be compared, ``problem`` says why); ``moved`` names the
    inputs whose top-``top_k`` ranking among ``candidates`` (the other tower's probes) differs, and
    ``moved_gap`` the largest torch-score gap between two candidates that swapped places (a swap of
    near-ties is what reduced precision does; one across a wide gap is a fault)."""

    tower: str
    probes: int
    min_cosine: float
    worst: str = ""
    top_k: int = DEFAULT_TOP_K
    candidates: int = 0
    moved: tuple[str, ...] = ()
    moved_gap: float = 0.0
    problem: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"probes": self.probes, "min_cosine": None if self.min_cosine != self.min_cosine else self.min_cosine,
                "worst": self.worst, "top_k": self.top_k, "candidates": self.candidates,
                "top_k_moved": list(self.moved), "top_k_moved_gap": self.moved_gap, "problem": self.problem}

    @classmethod
    def from_dict(cls, tower: str, raw: Mapping[str, Any]) -> TowerAgreement:
        """The inverse of :meth:`as_dict`; ValueError/TypeError/KeyError for a malformed entry."""
        cos = raw["min_cosine"]
        if cos is not None and (isinstance(cos, bool) or not isinstance(cos, (int, float))):
            raise TypeError(f"{tower}.min_cosine is {cos!r}")
        return cls(tower=tower, probes=int(raw["probes"]), min_cosine=float("nan") if cos is None else float(cos),
                   worst=str(raw.get("worst", "")), top_k=int(raw["top_k"]), candidates=int(raw["candidates"]),
                   moved=tuple(str(m) for m in raw.get("top_k_moved", ())),
                   moved_gap=float(raw.get("top_k_moved_gap", float("inf"))), problem=str(raw.get("problem", "")))

    def verdict(self, tol: Tolerances, providers: Sequence[str] = ()) -> tuple[bool, str]:
        """(passes ``tol``, the ``got`` text)."""
        bar = tol.bar(providers)
        if self.problem:
            return False, self.problem
        k = min(tol.top_k, self.top_k)
        tie = tie_gap(tol, providers)
        moved = bool(self.moved) and (tie == 0.0 or self.moved_gap > tie)
        ok = self.min_cosine >= bar and not moved and self.top_k >= min(tol.top_k, self.candidates)
        got = f"min cosine {self.min_cosine:.7f} ({self.worst})"
        got += (f"; top-{k} ranking differs for {len(self.moved)}: {', '.join(self.moved[:3])} (torch scores "
                f"{self.moved_gap:.2g} apart{'' if moved else ': near-ties for ' + tol.precision})" if self.moved
                else f"; top-{k} identical")
        return ok, got


def tie_gap(tol: Tolerances, providers: Sequence[str] = ()) -> float:
    """Two candidates whose torch scores are within this gap may swap places in a ranking: 0 for fp32
    on the CPU (rankings must be identical); for a reduced precision or an accelerator, the most that
    embeddings within the cosine bar can move a score, twice (both candidates): 2 * sqrt(2 * (1 - bar))."""
    bar = tol.bar(providers)
    accelerated = bool(providers) and providers[0] != CPU_PROVIDER
    if tol.precision == "fp32" and not accelerated:
        return 0.0
    return 2.0 * math.sqrt(2.0 * max(0.0, 1.0 - bar))


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


def _measure(tower: str, ref_emb: Any, new_emb: Any, ref_rank: Any, new_rank: Any, names: Sequence[str],
             top_k: int) -> TowerAgreement:
    import numpy as np

    nan = float("nan")
    if not len(names):
        return TowerAgreement(tower=tower, probes=0, min_cosine=nan, top_k=top_k,
                              problem="no probes to compare on (declare zero_shot in the verify table)")
    if np.shape(ref_emb) != np.shape(new_emb):
        return TowerAgreement(tower=tower, probes=len(names), min_cosine=nan, top_k=top_k,
                              problem=f"shapes differ: torch {np.shape(ref_emb)}, ONNX {np.shape(new_emb)}")
    if not np.isfinite(new_emb).all():
        return TowerAgreement(tower=tower, probes=len(names), min_cosine=nan, top_k=top_k,
                              problem="ONNX embeddings hold NaN or Inf")
    cos = _rows_cosine(ref_emb, new_emb)
    worst = int(np.argmin(cos))
    candidates = int(np.shape(ref_rank)[1])
    k = min(top_k, candidates)
    a, b = _topk(ref_rank, k), _topk(new_rank, k)
    scores = np.asarray(ref_rank, dtype=np.float64)
    rows = [i for i in range(len(a)) if a[i] != b[i]]
    gap = max((abs(scores[i, x] - scores[i, y]) for i in rows for x, y in zip(a[i], b[i], strict=True) if x != y),
              default=0.0)
    return TowerAgreement(tower=tower, probes=len(names), min_cosine=float(cos[worst]), worst=str(names[worst]),
                          top_k=k, candidates=candidates, moved=tuple(str(names[i]) for i in rows),
                          moved_gap=float(gap))


def judge(model: str, tol: Tolerances, m: TowerAgreement, *, providers: Sequence[str] = (),
          seconds: float = 0.0) -> CheckResult:
    """``onnx_agreement.<tower>`` from a measurement."""
    what = "probe images" if m.tower == "image" else "probe captions"
    expected = (f"{tol.precision} min cosine >= {tol.bar(providers):g} torch vs ONNX over {m.probes} {what}, "
                f"identical top-{tol.top_k} rankings")
    ok, got = m.verdict(tol, providers)
    return CheckResult(model=model, check=f"onnx_agreement.{m.tower}", status=PASS if ok else FAIL,
                       expected=expected, got=got, seconds=seconds)


def measure(torch_emb: Any, onnx_emb: Any, images: Sequence[Any], image_names: Sequence[str],
            captions: Sequence[str], top_k: int = DEFAULT_TOP_K) -> tuple[TowerAgreement, TowerAgreement, float]:
    """Both towers of ``onnx_emb`` against ``torch_emb`` (``images(rgb)``, ``texts(captions)``, un-normalised
    outputs): (image, text, seconds)."""
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
    return (_measure("image", ti, oi, img_ref, img_new, list(image_names), top_k),
            _measure("text", tt, ot, txt_ref, txt_new, list(captions), top_k), seconds)


def agreement(model: str, torch_emb: Any, onnx_emb: Any, images: Sequence[Any], image_names: Sequence[str],
              captions: Sequence[str], tol: Tolerances | None = None,
              providers: Sequence[str] = ()) -> list[CheckResult]:
    """Compare two embedders (``images(rgb)``, ``texts(captions)``, un-normalised outputs) tower by tower."""
    tol = tol or Tolerances()
    image, text, seconds = measure(torch_emb, onnx_emb, images, image_names, captions, tol.top_k)
    return [judge(model, tol, image, providers=providers, seconds=seconds),
            judge(model, tol, text, providers=providers, seconds=seconds)]


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
        onnx_emb = OnnxClipEmbedder(image_onnx, text_onnx, providers=providers,
                                    expected_source=ref.derived_from or None)
    except (ClipLoadError, OnnxClipError) as exc:
        return [CheckResult(model=mid, check=c, status=FAIL, expected="torch and ONNX CLIP load", got=str(exc))
                for c in (CHECK_IMAGE, CHECK_TEXT)]
    names, captions = probes(ref.verify)
    images = [load_rgb(n, probes_dir) for n in names]
    return agreement(mid, ClipEmbedder(loaded, "cpu"), onnx_emb, images, names, captions, tol,
                     providers=onnx_emb.providers)
