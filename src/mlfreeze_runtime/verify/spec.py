"""The per-model ``[models.<id>.verify]`` tables of src/mlfreeze/specs/models.toml, validated.

The manifest loader passes these tables through raw; this module turns one into a frozen
dataclass or raises :class:`SpecError` naming the dotted key. Every threshold a check uses
comes from here (with the defaults below), never from constants scattered in the checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlfreeze_runtime.verify.probes import COLOURS, FILE_PROBES, SHAPES


class SpecError(ValueError):
    """A verify table is malformed; the message names ``models.<id>.verify.<key>``."""


@dataclass(frozen=True, kw_only=True)
class ZeroShot:
    image: str
    caption: str


@dataclass(frozen=True, kw_only=True)
class FaceProbe:
    image: str
    count: int
    min_score: float


@dataclass(frozen=True, kw_only=True)
class CommonSpec:
    norm_tolerance: float
    determinism_tolerance: float
    golden_tolerance: float
    cross_device_min_cosine: float
    max_pairwise_cosine: float
    raw_norm_min: float


@dataclass(frozen=True, kw_only=True)
class ClipSpec(CommonSpec):
    quick_gelu: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    zero_shot: tuple[ZeroShot, ...]
    top1: float
    margin: float
    interpolation: str
    resize_mode: str
    preprocess_tolerance: float
    paraphrases: tuple[tuple[str, str], ...]
    paraphrase_distractors: tuple[str, ...]
    paraphrase_margin: float
    matched_cosine: tuple[float, float] | None
    unmatched_cosine: tuple[float, float] | None
    reference_sims: tuple[float, ...]
    reference_tolerance: float
    reference_tolerance_accelerator: float


@dataclass(frozen=True, kw_only=True)
class FacesSpec(CommonSpec):
    det_size: tuple[int, int]
    det_thresh: float
    faces: tuple[FaceProbe, ...]
    no_face: tuple[str, ...]
    augment_min_cosine: float
    rescale: float | None
    rescale_min_cosine: float | None
    distinct_max_cosine: float


COMMON_DEFAULTS = {
    "norm_tolerance": 1e-3,
    "determinism_tolerance": 1e-5,
    "golden_tolerance": 2e-3,
    "cross_device_min_cosine": 0.99,
    "max_pairwise_cosine": 0.99,
    "raw_norm_min": 1e-3,
}
# reference_sims on the CPU: faithful variants move them by <= 5e-5 (4-decimal pins), a 2 % perturbation
# of one weight matrix by 6e-4 (docs/benchmarks.md); on a GPU provider, TF32 kernels move them more
REFERENCE_TOLERANCE = 2e-4
REFERENCE_TOLERANCE_ACCELERATOR = 2e-3
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
RESIZE_MODES = ("shortest", "squash", "longest")


class _Reader:
    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(f"{where} must be a table")
        self.data = dict(data)
        self.where = where

    def err(self, key: str, problem: str) -> SpecError:
        return SpecError(f"{self.where}.{key} {problem}")

    def num(self, key: str, default: float | None = None, *, lo: float | None = None,
            hi: float | None = None) -> float:
        if key not in self.data:
            if default is None:
                raise self.err(key, "is missing")
            return default
        v = self.data.pop(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.err(key, f"must be a number, got {type(v).__name__}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.err(key, f"is {v}; allowed range [{lo}, {hi}]")
        return float(v)

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        v = self.data.pop(key, default)
        if v not in allowed:
            raise self.err(key, f"is {v!r}; allowed: {', '.join(allowed)}")
        return str(v)

    def band(self, key: str) -> tuple[float, float] | None:
        """``[lo, hi]`` with lo <= hi, both in [-1, 1] (cosines), or None when absent."""
        if key not in self.data:
            return None
        v = self.data.pop(key)
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                              and -1.0 <= x <= 1.0 for x in v) and v[0] <= v[1]):
            raise self.err(key, "must be [low, high] with -1 <= low <= high <= 1")
        return (float(v[0]), float(v[1]))

    def opt_num(self, key: str, **kw: Any) -> float | None:
        return self.num(key, **kw) if key in self.data else None

    def boolean(self, key: str) -> bool:
        if key not in self.data:
            raise self.err(key, "is missing")
        v = self.data.pop(key)
        if not isinstance(v, bool):
            raise self.err(key, "must be true or false")
        return v

    def lst(self, key: str, required: bool = True) -> list[Any]:
        if key not in self.data:
            if required:
                raise self.err(key, "is missing")
            return []
        v = self.data.pop(key)
        if not isinstance(v, list):
            raise self.err(key, "must be a list")
        return v

    def common(self) -> dict[str, float]:
        return {k: self.num(k, d, lo=0.0) for k, d in COMMON_DEFAULTS.items()}

    def done(self) -> None:
        if self.data:
            raise self.err(sorted(self.data)[0], "is not a known key")


def check_probe_name(name: Any, where: str) -> str:
    if not isinstance(name, str):
        raise SpecError(f"{where} must be a probe name string")
    if name in FILE_PROBES or name in ("synthetic:blank",):
        return name
    parts = name.split(":", 1)[-1].split("/")
    if name.startswith("synthetic:shape/") and len(parts) == 3 and parts[1] in COLOURS and parts[2] in SHAPES:
        return name
    if name.startswith("synthetic:faces/") and len(parts) == 2 and parts[1].isdigit():
        return name
    raise SpecError(f"{where} is {name!r}: not a known probe (see src/mlfreeze_runtime/verify/probes.py)")


def _triple(v: Any, where: str) -> tuple[float, float, float]:
    if not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)):
        raise SpecError(f"{where} must be a list of 3 numbers")
    return (float(v[0]), float(v[1]), float(v[2]))


def parse_clip(model_id: str, table: Mapping[str, Any]) -> ClipSpec:
    where = f"models.{model_id}.verify"
    r = _Reader(table, where)
    common = r.common()
    quick_gelu = r.boolean("quick_gelu")
    mean = _triple(r.data.pop("mean", None), f"{where}.mean")
    std = _triple(r.data.pop("std", None), f"{where}.std")
    zs = []
    for i, item in enumerate(r.lst("zero_shot")):
        if not isinstance(item, Mapping) or set(item) != {"image", "caption"}:
            raise SpecError(f"{where}.zero_shot[{i}] must be a table with exactly image and caption")
        zs.append(ZeroShot(image=check_probe_name(item["image"], f"{where}.zero_shot[{i}].image"),
                           caption=str(item["caption"])))
    if len(zs) < 2 or len({z.caption for z in zs}) != len(zs):
        raise SpecError(f"{where}.zero_shot needs at least 2 probes with distinct captions")
    pairs: list[tuple[str, str]] = []
    distractors: list[str] = []
    if "paraphrases" in r.data or "text_triples" not in r.data:
        for i, t in enumerate(r.lst("paraphrases")):
            if not (isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) and x for x in t)):
                raise SpecError(f"{where}.paraphrases[{i}] must be [caption, paraphrase]")
            pairs.append((t[0], t[1]))
        if len(pairs) < 3 or len({p for _, p in pairs}) != len(pairs):
            raise SpecError(f"{where}.paraphrases needs at least 3 pairs with distinct paraphrases "
                            "(each pair's distractors are the other pairs' paraphrases)")
    # the older form [caption, paraphrase, unrelated] is still read: its unrelated captions join
    # the distractors, so each caption must beat every other paraphrase and every unrelated one
    for i, t in enumerate(r.lst("text_triples", required=False)):
        if not (isinstance(t, list) and len(t) == 3 and all(isinstance(x, str) and x for x in t)):
            raise SpecError(f"{where}.text_triples[{i}] must be [caption, paraphrase, unrelated]")
        pairs.append((t[0], t[1]))
        distractors.append(t[2])
    ref = r.lst("reference_sims", required=False)
    if ref and (len(ref) != len(zs) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                 and -1.0 <= x <= 1.0 for x in ref)):
        raise SpecError(f"{where}.reference_sims must hold one cosine in [-1, 1] per zero_shot probe ({len(zs)})")
    spec = ClipSpec(**common, quick_gelu=quick_gelu, mean=mean, std=std, zero_shot=tuple(zs),
                    top1=r.num("top1", lo=0.0, hi=1.0), margin=r.num("margin", lo=-1.0, hi=2.0),
                    interpolation=r.choice("interpolation", "bicubic", INTERPOLATIONS),
                    resize_mode=r.choice("resize_mode", "shortest", RESIZE_MODES),
                    preprocess_tolerance=r.num("preprocess_tolerance", 0.02, lo=0.0),
                    paraphrases=tuple(pairs), paraphrase_distractors=tuple(distractors),
                    paraphrase_margin=r.num("paraphrase_margin", 0.0, lo=-2.0, hi=2.0),
                    matched_cosine=r.band("matched_cosine"), unmatched_cosine=r.band("unmatched_cosine"),
                    reference_sims=tuple(float(x) for x in ref),
                    reference_tolerance=r.num("reference_tolerance", REFERENCE_TOLERANCE, lo=0.0),
                    reference_tolerance_accelerator=r.num("reference_tolerance_accelerator",
                                                          REFERENCE_TOLERANCE_ACCELERATOR, lo=0.0))
    r.done()
    return spec


def parse_faces(model_id: str, table: Mapping[str, Any]) -> FacesSpec:
    where = f"models.{model_id}.verify"
    r = _Reader(table, where)
    common = r.common()
    det_size = r.data.pop("det_size", [640, 640])
    if not (isinstance(det_size, list) and len(det_size) == 2 and all(isinstance(x, int) and x > 0 for x in det_size)):
        raise SpecError(f"{where}.det_size must be [width, height]")
    faces = []
    for i, item in enumerate(r.lst("faces")):
        if not isinstance(item, Mapping) or not {"image", "count"} <= set(item) or \
                not set(item) <= {"image", "count", "min_score"}:
            raise SpecError(f"{where}.faces[{i}] must be a table with image, count[, min_score]")
        count = item["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise SpecError(f"{where}.faces[{i}].count must be a positive integer")
        min_score = item.get("min_score", 0.5)
        if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not 0.0 <= min_score <= 1.0:
            raise SpecError(f"{where}.faces[{i}].min_score must be a number in [0, 1], got {min_score!r}")
        faces.append(FaceProbe(image=check_probe_name(item["image"], f"{where}.faces[{i}].image"),
                               count=count, min_score=float(min_score)))
    if not faces:
        raise SpecError(f"{where}.faces must declare at least one probe with faces")
    no_face = tuple(check_probe_name(n, f"{where}.no_face[{i}]") for i, n in enumerate(r.lst("no_face")))
    spec = FacesSpec(**common, det_size=(det_size[0], det_size[1]),
                     det_thresh=r.num("det_thresh", 0.5, lo=0.0, hi=1.0), faces=tuple(faces), no_face=no_face,
                     augment_min_cosine=r.num("augment_min_cosine", lo=-1.0, hi=1.0) if "augment_min_cosine"
                     in r.data or "flip_min_cosine" not in r.data  # the older name, still read
                     else r.num("flip_min_cosine", lo=-1.0, hi=1.0),
                     rescale=r.opt_num("rescale", lo=0.1, hi=4.0),
                     rescale_min_cosine=r.opt_num("rescale_min_cosine", lo=-1.0, hi=1.0),
                     distinct_max_cosine=r.num("distinct_max_cosine", lo=-1.0, hi=1.0))
    if (spec.rescale is None) != (spec.rescale_min_cosine is None):
        raise SpecError(f"{where}.rescale and rescale_min_cosine go together")
    r.done()
    return spec


def parse(model_id: str, kind: str, table: Mapping[str, Any] | None) -> ClipSpec | FacesSpec:
    if not table:
        raise SpecError(f"models.{model_id}.verify is missing: every model declares its checks and thresholds")
    if kind == "clip":
        return parse_clip(model_id, table)
    if kind == "insightface":
        return parse_faces(model_id, table)
    raise SpecError(f"models.{model_id}.kind is {kind!r}; verify knows clip, insightface")
