"""The CLIP check suite: load strictly, embed the declared probes, judge them.

Semantic probes are what a random, noisy, mixed or mis-preprocessed model cannot pass:
zero-shot image->caption top-1 accuracy and margin, and caption->paraphrase sanity.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlfreeze_runtime.clip import ClipEmbedder, ClipLoadError, load_clip
from mlfreeze_runtime.verify import checks, goldens
from mlfreeze_runtime.verify.probes import load_rgb
from mlfreeze_runtime.verify.result import FAIL, PASS, SKIP, CheckResult, ModelRef
from mlfreeze_runtime.verify.spec import ClipSpec


def _files(ref: ModelRef) -> tuple[Path, Path | None]:
    weights = [n for n, r in ref.roles.items() if r == "weights"]
    configs = [n for n, r in ref.roles.items() if r == "config"]
    if not weights:
        weights = [n for n in ref.files if n.endswith((".safetensors", ".bin", ".pt", ".pth"))]
    if not configs:
        configs = [n for n in ref.files if n.endswith(".json")]
    if len(weights) != 1:
        raise ClipLoadError(f"expected exactly one weights file among {sorted(ref.files)}")
    return Path(ref.files[weights[0]]), (Path(ref.files[configs[0]]) if configs else None)


def zero_shot(model: str, sims: Any, *, top1: float, margin: float, names: list[str]) -> list[CheckResult]:
    """``sims[i, j]``: image i vs caption j, caption i being the right one."""
    import numpy as np

    s = np.asarray(sims, dtype=np.float64)
    n = len(s)
    right = np.diag(s)
    wrong = np.where(np.eye(n, dtype=bool), -np.inf, s).max(axis=1)
    hits = (right > wrong) & np.isfinite(right)
    acc = float(hits.mean()) if n else 0.0
    misses = [names[i] for i in range(n) if not hits[i]]
    gaps = np.where(np.isfinite(right - wrong), right - wrong, -np.inf)
    worst = int(np.argmin(gaps)) if n else 0
    return [
        CheckResult(model=model, check="zero_shot_top1", status=PASS if acc >= top1 else FAIL,
                    expected=f"top-1 >= {top1:.2f} over {n} image/caption probes",
                    got=f"{acc:.2f}" + (f" (missed: {', '.join(misses[:4])}{'...' if len(misses) > 4 else ''})"
                                        if misses else "")),
        CheckResult(model=model, check="zero_shot_margin", status=PASS if gaps[worst] >= margin else FAIL,
                    expected=f"cos(right) - cos(best wrong) >= {margin:g} for every image",
                    got=f"min {float(gaps[worst]):.4f} ({names[worst]})"),
    ]


def text_sanity(model: str, emb: ClipEmbedder, triples: tuple[tuple[str, str, str], ...]) -> CheckResult:
    import numpy as np

    failures, worst = [], np.inf
    for a, p, u in triples:
        e = emb.texts([a, p, u])
        gap = float(e[0] @ e[1] - e[0] @ e[2])
        worst = min(worst, gap)
        if not gap > 0:
            failures.append(f"{a!r} nearer {u!r} than {p!r}")
    return CheckResult(model=model, check="text_paraphrase", status=FAIL if failures else PASS,
                       expected="each caption nearer its paraphrase than the unrelated caption",
                       got="; ".join(failures[:2]) if failures else f"min gap {worst:.4f}")


def run(ref: ModelRef, spec: ClipSpec, *, device: str = "cpu", probes_dir: Path | None = None,
        compare_device: bool = True) -> tuple[list[CheckResult], goldens.Values | None]:
    """All CLIP checks for one model; returns the results and the golden values (for pinning)."""
    mid = ref.id
    out: list[CheckResult] = []
    t0 = time.perf_counter()
    try:
        weights, config = _files(ref)
        loaded = load_clip(arch=ref.arch, weights=weights, config=config, declared_quick_gelu=spec.quick_gelu)
    except ClipLoadError as exc:
        return [CheckResult(model=mid, check="load", status=FAIL, expected=f"{ref.arch} from local files",
                            got=str(exc), seconds=time.perf_counter() - t0)], None
    out.append(CheckResult(model=mid, check="load", status=PASS, expected=f"{ref.arch} from local files",
                           got=f"strict load of {weights.name}, quick_gelu={loaded.quick_gelu}",
                           seconds=time.perf_counter() - t0))

    pp_mean = tuple(round(float(v), 6) for v in loaded.preprocess_cfg["mean"])
    pp_std = tuple(round(float(v), 6) for v in loaded.preprocess_cfg["std"])
    want = (tuple(round(v, 6) for v in spec.mean), tuple(round(v, 6) for v in spec.std))
    out.append(CheckResult(model=mid, check="preprocess_config", status=PASS if (pp_mean, pp_std) == want else FAIL,
                           expected=f"mean {want[0]} std {want[1]}", got=f"mean {pp_mean} std {pp_std}"))

    cpu = ClipEmbedder(loaded, "cpu")
    names = [z.image for z in spec.zero_shot]
    captions = [z.caption for z in spec.zero_shot]
    t = time.perf_counter()
    images = [load_rgb(n, probes_dir) for n in names]
    img = cpu.images(images)
    txt = cpu.texts(captions)
    embed_s = time.perf_counter() - t
    dim = ref.embed_dim
    out += [
        checks.shape_dtype(mid, img, rows=len(names), dim=dim, check="shape_dtype.image"),
        checks.shape_dtype(mid, txt, rows=len(captions), dim=dim, check="shape_dtype.text"),
        checks.finite(mid, img, check="finite.image"),
        checks.finite(mid, txt, check="finite.text"),
        checks.unit_norm(mid, img, tolerance=spec.norm_tolerance, check="unit_norm.image"),
        checks.unit_norm(mid, txt, tolerance=spec.norm_tolerance, check="unit_norm.text"),
        checks.non_collapse(mid, img, names, max_cosine=spec.max_pairwise_cosine, check="non_collapse.image"),
        checks.non_collapse(mid, txt, captions, max_cosine=spec.max_pairwise_cosine, check="non_collapse.text"),
        checks.determinism(mid, img, cpu.images(images), tolerance=spec.determinism_tolerance),
    ]
    out[2] = CheckResult(**{**out[2].__dict__, "seconds": embed_s})
    if img.shape[1:] == txt.shape[1:]:
        out += zero_shot(mid, checks.cosine_matrix(img, txt), top1=spec.top1, margin=spec.margin, names=names)
    else:
        out.append(CheckResult(model=mid, check="zero_shot_top1", status=FAIL, expected="image and text dims agree",
                               got=f"{img.shape[1:]} vs {txt.shape[1:]}"))
    if spec.text_triples:
        out.append(text_sanity(mid, cpu, spec.text_triples))
    else:
        out.append(CheckResult(model=mid, check="text_paraphrase", status=SKIP, got="no text_triples declared"))
    values = goldens.clip_values(names, img, captions, txt)
    out.append(goldens.check(mid, ref.golden, values, tolerance=spec.golden_tolerance))
    out.append(_cross_device(mid, cpu, images, captions, img, txt, device, spec, compare_device))
    return out, values


def _cross_device(mid: str, cpu: ClipEmbedder, images: list[Any], captions: list[str], img: Any, txt: Any,
                  device: str, spec: ClipSpec, enabled: bool) -> CheckResult:
    import numpy as np

    if not enabled or device == "cpu":
        return CheckResult(model=mid, check="cross_device", status=SKIP, got=f"device is {device}: no accelerator")
    t = time.perf_counter()
    acc = cpu.to(device)
    other = np.concatenate([acc.images(images), acc.texts(captions)])
    res = checks.cross_device(mid, np.concatenate([img, txt]), other, device=device,
                              min_cosine=spec.cross_device_min_cosine)
    return CheckResult(**{**res.__dict__, "seconds": time.perf_counter() - t})
