"""The CLIP check suite: load strictly, embed the declared probes, judge them.

Semantic probes are what a random, noisy, mixed or mis-preprocessed model cannot pass:
zero-shot image->caption top-1 accuracy and margin, caption->paraphrase margins against every
other pair's paraphrase, and reference statistics of the image/caption cosines. Structural
checks catch what semantics may not on a small probe set: the full preprocessing against the
declared one, LayerNorms left at init, raw outputs (before normalisation and dtype cast),
batch-vs-single and first-vs-second-load agreement.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
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


LAYER_NORM_TYPES = ("LayerNorm", "LayerNormFp32")


def layer_norms(model: str, module: Any) -> CheckResult:
    """No LayerNorm may sit exactly at its initial value (weight all 1, bias all 0).

    Training moves every LayerNorm; one left at init means its tensors were never loaded or were
    reset (a checkpoint saved without them, a converter that dropped them, a random init)."""
    import torch

    names, at_init = [], []
    for name, mod in module.named_modules():
        if type(mod).__name__ not in LAYER_NORM_TYPES and not isinstance(mod, torch.nn.LayerNorm):
            continue
        weight, bias = getattr(mod, "weight", None), getattr(mod, "bias", None)
        if weight is None:
            continue
        names.append(name)
        if bool(torch.all(weight == 1)) and (bias is None or bool(torch.all(bias == 0))):
            at_init.append(name)
    ok = bool(names) and not at_init
    got = (f"{len(at_init)} of {len(names)} at init: {', '.join(at_init[:3])}{'...' if len(at_init) > 3 else ''}"
           if at_init else f"{len(names)} LayerNorms, none at init")
    return CheckResult(model=model, check="layer_norms", status=PASS if ok else FAIL,
                       expected="every LayerNorm moved from its init (weight 1, bias 0)", got=got)


def preprocess_probe() -> Any:
    """A deterministic non-square RGB image (77 x 123) with fine detail, so that the resize mode
    (crop vs squash vs pad) and the interpolation both change the preprocessed pixels."""
    import numpy as np

    yy, xx = np.mgrid[0:77, 0:123]
    img = np.empty((77, 123, 3), dtype=np.uint8)
    img[..., 0] = (xx * 7 + yy * 3) % 256
    img[..., 1] = ((xx // 3 + yy // 3) % 2) * 255
    img[..., 2] = (xx * yy) % 256
    return img


def reference_preprocess(rgb: Any, *, size: int, interpolation: str, resize_mode: str,
                         mean: tuple[float, float, float], std: tuple[float, float, float]) -> Any:
    """The declared preprocessing done independently of open_clip: PIL resize (shortest side to
    ``size`` then centre crop / both sides to ``size`` / longest side then centre pad with 0),
    to [0, 1], then (x - mean) / std. Returns a float32 (3, size, size) array."""
    import numpy as np
    from PIL import Image

    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                "nearest": Image.Resampling.NEAREST}[interpolation]
    im = Image.fromarray(rgb).convert("RGB")
    w, h = im.size
    if resize_mode == "squash":
        im = im.resize((size, size), resample)
    elif resize_mode == "shortest":
        short, long = min(w, h), max(w, h)
        new_long = int(size * long / short)
        im = im.resize((size, new_long) if w <= h else (new_long, size), resample)
        w, h = im.size
        left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
        im = im.crop((left, top, left + size, top + size))
    else:  # longest
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = Image.new("RGB", (size, size), (0, 0, 0))
        canvas.paste(im.resize((nw, nh), resample), ((size - nw) // 2, (size - nh) // 2))
        im = canvas
    arr = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (arr - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]


def preprocess_config_check(mid: str, cfg: Mapping[str, Any], spec: ClipSpec) -> CheckResult:
    """The model's normalisation (``mean``/``std`` of its preprocess config, 6 decimals) is the one
    the manifest declares."""
    got = (tuple(round(float(v), 6) for v in cfg["mean"]), tuple(round(float(v), 6) for v in cfg["std"]))
    want = (tuple(round(v, 6) for v in spec.mean), tuple(round(v, 6) for v in spec.std))
    return CheckResult(model=mid, check="preprocess_config", status=PASS if got == want else FAIL,
                       expected=f"mean {want[0]} std {want[1]}", got=f"mean {got[0]} std {got[1]}")


def preprocess_check(model: str, preprocess: Any, spec: ClipSpec, image_size: int) -> CheckResult:
    """The transform the embedder runs, applied to :func:`preprocess_probe`, against
    :func:`reference_preprocess` built from the declared mean, std, interpolation and resize mode."""
    import numpy as np
    from PIL import Image

    rgb = preprocess_probe()
    want = reference_preprocess(rgb, size=image_size, interpolation=spec.interpolation,
                                resize_mode=spec.resize_mode, mean=spec.mean, std=spec.std)
    got = np.asarray(preprocess(Image.fromarray(rgb)), dtype=np.float32)
    exp = (f"{spec.resize_mode} resize to {image_size}, {spec.interpolation}, declared mean/std: "
           f"max |pixel delta| <= {spec.preprocess_tolerance:g}")
    if got.shape != want.shape:
        return CheckResult(model=model, check="preprocess", status=FAIL, expected=exp,
                           got=f"output shape {got.shape}, declared {want.shape}")
    diff = float(np.max(np.abs(got - want)))
    ok = bool(np.isfinite(diff)) and diff <= spec.preprocess_tolerance
    return CheckResult(model=model, check="preprocess", status=PASS if ok else FAIL, expected=exp,
                       got=f"max |pixel delta| = {diff:.4g} (normalised units)")


def encode_raw(loaded: Any, rgb_images: list[Any], captions: list[str]) -> tuple[Any, Any]:
    """The model's own outputs for images and captions, before any normalisation or dtype cast
    (torch tensors on the model's device): what ``shape_dtype`` and ``raw_norm`` judge."""
    import torch
    from PIL import Image

    device = next(loaded.model.parameters()).device
    batch = torch.stack([loaded.preprocess(Image.fromarray(im)) for im in rgb_images]).to(device)
    with torch.no_grad():
        return loaded.model.encode_image(batch), loaded.model.encode_text(loaded.tokenizer(list(captions)).to(device))


def _normed(t: Any) -> Any:
    import numpy as np

    a = t.detach().float().cpu().numpy().astype(np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def similarity_checks(model: str, sims: Any, spec: ClipSpec, *, accelerated: bool = False) -> list[CheckResult]:
    """Reference statistics of the zero-shot image/caption cosines (``sims[i, i]`` matched).

    ``reference_sims`` are measured on the CPU; ``accelerated`` (the embedder ran on a GPU provider)
    judges them with the declared looser ``reference_tolerance_accelerator``."""
    import numpy as np

    s = np.asarray(sims, dtype=np.float64)
    eye = np.eye(len(s), dtype=bool)
    out = []
    for name, band, value, what in (("sims_matched", spec.matched_cosine, float(np.mean(s[eye])),
                                     "mean cosine(image, its caption)"),
                                    ("sims_unmatched", spec.unmatched_cosine, float(np.mean(s[~eye])),
                                     "mean cosine(image, another caption)")):
        out.append(checks.within(model, name, value, band, what=what) if band is not None else
                   CheckResult(model=model, check=name, status=SKIP, got=f"{name.replace('sims_', '')}_cosine "
                               "not declared"))
    if spec.reference_sims:
        tol = spec.reference_tolerance_accelerator if accelerated else spec.reference_tolerance
        delta = np.abs(np.diag(s) - np.array(spec.reference_sims))
        worst = int(np.argmax(np.where(np.isfinite(delta), delta, np.inf)))
        d = float(delta[worst]) if np.isfinite(delta[worst]) else float("inf")
        out.append(CheckResult(model=model, check="reference_sims", status=PASS if d <= tol
                               else FAIL, expected=f"cosine(image, its caption) within {tol:g} "
                               "of the declared reference_sims",
                               got=f"max |delta| = {d:.4g} ({spec.zero_shot[worst].image})"))
    else:
        out.append(CheckResult(model=model, check="reference_sims", status=SKIP, got="reference_sims not declared"))
    return out


def run(ref: ModelRef, spec: ClipSpec, *, device: str = "cpu", probes_dir: Path | None = None,
        compare_device: bool = True, out: list[CheckResult] | None = None,
        ) -> tuple[list[CheckResult], goldens.Values | None]:
    """All CLIP checks for one model; returns the results and the golden values (for pinning).

    Results are appended to ``out`` (a new list by default) as they are produced, so a caller that
    catches an exception still holds every result before it."""

    mid = ref.id
    out = [] if out is None else out
    t0 = time.perf_counter()
    try:
        weights, config = _files(ref)
        loaded = load_clip(arch=ref.arch, weights=weights, config=config, declared_quick_gelu=spec.quick_gelu)
    except ClipLoadError as exc:
        out.append(CheckResult(model=mid, check="load", status=FAIL, expected=f"{ref.arch} from local files",
                               got=str(exc), seconds=time.perf_counter() - t0))
        return out, None
    out.append(CheckResult(model=mid, check="load", status=PASS, expected=f"{ref.arch} from local files",
                           got=f"strict load of {weights.name}, quick_gelu={loaded.quick_gelu}",
                           seconds=time.perf_counter() - t0))

    out.append(preprocess_config_check(mid, loaded.preprocess_cfg, spec))
    out.append(preprocess_check(mid, loaded.preprocess, spec, loaded.image_size))
    out.append(layer_norms(mid, loaded.model))

    cpu = ClipEmbedder(loaded, "cpu")
    names = [z.image for z in spec.zero_shot]
    captions = [z.caption for z in spec.zero_shot]
    t = time.perf_counter()
    images = [load_rgb(n, probes_dir) for n in names]
    raw_img, raw_txt = encode_raw(loaded, images, captions)
    embed_s = time.perf_counter() - t
    raw = (raw_img.detach().float().cpu().numpy(), raw_txt.detach().float().cpu().numpy(),
           str(raw_img.dtype).replace("torch.", ""), str(raw_txt.dtype).replace("torch.", ""))
    values = embedding_checks(ref, spec, cpu, images, names, captions, raw, embed_s, out,
                              reload=_reload(mid, ref, spec, weights, config, images, captions))
    out.append(_cross_device(mid, cpu, images, captions, *values[1], device, spec, compare_device))
    return out, values[0]


def _unit_rows(a: Any) -> Any:
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def embedding_checks(ref: ModelRef, spec: ClipSpec, emb: Any, images: list[Any], names: list[str],
                     captions: list[str], raw: tuple[Any, Any, str, str], embed_s: float, out: list[CheckResult],
                     *, reload: Any) -> tuple[goldens.Values, tuple[Any, Any]]:
    """The checks every CLIP path passes, on any embedder with ``images(rgb)`` / ``texts(captions)``
    (torch :class:`ClipEmbedder` or ONNX ``OnnxClipEmbedder``): shape, dtype, finiteness and norm of
    the raw outputs (``raw`` = image array, text array, their dtype names), unit norm, non-collapse,
    batch determinism, a second load (``reload()`` returns the first-vs-second-load result for
    the concatenated normalised embeddings), zero-shot, similarity statistics, paraphrases, goldens.
    Appends to ``out``; returns (golden values, (image embeddings, text embeddings))."""
    import numpy as np

    mid = ref.id
    raw_i, raw_t, dtype_i, dtype_t = raw
    img = emb.images(images)
    txt = emb.texts(captions)
    dim = ref.embed_dim
    out += [
        checks.shape_dtype(mid, np.empty(tuple(raw_i.shape), dtype=dtype_i), rows=len(names), dim=dim,
                           check="shape_dtype.image"),
        checks.shape_dtype(mid, np.empty(tuple(raw_t.shape), dtype=dtype_t), rows=len(captions), dim=dim,
                           check="shape_dtype.text"),
    ]
    out[-2] = CheckResult(**{**out[-2].__dict__, "seconds": embed_s})
    out += [
        checks.finite(mid, raw_i, check="finite.image"),
        checks.finite(mid, raw_t, check="finite.text"),
        checks.raw_norm(mid, raw_i, min_norm=spec.raw_norm_min, check="raw_norm.image"),
        checks.raw_norm(mid, raw_t, min_norm=spec.raw_norm_min, check="raw_norm.text"),
    ]
    if img.shape == raw_i.shape and txt.shape == raw_t.shape:
        # the embedder the app runs returns the model's own outputs, L2-normalised
        normed_raw = np.concatenate([_unit_rows(raw_i), _unit_rows(raw_t)])
        out.append(checks.determinism(mid, np.concatenate([img, txt]), normed_raw, tolerance=spec.norm_tolerance,
                                      check="unit_norm", what="embedder output - raw output / its norm"))
    else:
        out.append(CheckResult(model=mid, check="unit_norm", status=FAIL, expected="embedder output shaped like "
                               "the model's own", got=f"{img.shape}/{txt.shape} vs {raw_i.shape}/{raw_t.shape}"))
    out += [
        checks.non_collapse(mid, img, names, max_cosine=spec.max_pairwise_cosine, check="non_collapse.image"),
        checks.non_collapse(mid, txt, captions, max_cosine=spec.max_pairwise_cosine, check="non_collapse.text"),
    ]
    single = np.concatenate([np.concatenate([emb.images([im]) for im in images]),
                             np.concatenate([emb.texts([c]) for c in captions])])
    out.append(checks.determinism(mid, np.concatenate([img, txt]), single, tolerance=spec.determinism_tolerance,
                                  check="determinism.batch", what="batch - one input at a time"))
    out.append(reload(np.concatenate([img, txt])))
    if img.shape[1:] == txt.shape[1:]:
        sims = checks.cosine_matrix(img, txt)
        out += zero_shot(mid, sims, top1=spec.top1, margin=spec.margin, names=names)
        providers = list(getattr(emb, "providers", None) or ["CPUExecutionProvider"])
        out += similarity_checks(mid, sims, spec, accelerated=providers[0] != "CPUExecutionProvider")
    else:
        out.append(CheckResult(model=mid, check="zero_shot_top1", status=FAIL, expected="image and text dims agree",
                               got=f"{img.shape[1:]} vs {txt.shape[1:]}"))
    pairs = list(spec.paraphrases)
    extra = emb.texts(list(spec.paraphrase_distractors)) if spec.paraphrase_distractors else None
    out.append(checks.paraphrase_margin(mid, emb.texts([a for a, _ in pairs]), emb.texts([p for _, p in pairs]),
                                        [a for a, _ in pairs], margin=spec.paraphrase_margin, distractors=extra))
    values = goldens.clip_values(names, img, captions, txt)
    out.append(goldens.check(mid, ref.golden, values, tolerance=spec.golden_tolerance))
    return values, (img, txt)


def onnx_towers(ref: ModelRef) -> tuple[Path, Path]:
    """The model's ONNX towers (roles ``image_onnx``, ``text_onnx``); ClipLoadError when one is missing."""
    towers = {r: Path(ref.files[n]) for n, r in ref.roles.items() if r in ("image_onnx", "text_onnx")
              and n in ref.files}
    if len(towers) != 2:
        raise ClipLoadError(f"model {ref.id!r} lists no ONNX towers (roles image_onnx and text_onnx): "
                            "run `mlfreeze export` (the slim flavor needs them)")
    return towers["image_onnx"], towers["text_onnx"]


def run_onnx(ref: ModelRef, spec: ClipSpec, *, providers: Sequence[str] | None = None,
             probes_dir: Path | None = None, out: list[CheckResult] | None = None,
             ) -> tuple[list[CheckResult], goldens.Values | None]:
    """Every CLIP check that applies to the exported model, on the ONNX path a slim bundle runs
    (:class:`mlfreeze_runtime.onnx_clip.OnnxClipEmbedder`: numpy preprocessing, torch-free tokenizer,
    onnxruntime): load, preprocessing (config and pixels), then :func:`embedding_checks`. The
    torch-only structural check (``layer_norms``) does not apply; ``onnx_agreement.*`` (verify.gate)
    compares the towers with torch where torch is installed."""
    from mlfreeze_runtime.onnx_clip import OnnxClipEmbedder, OnnxClipError
    from mlfreeze_runtime.preprocess_np import PreprocessError
    from mlfreeze_runtime.tokenizer import TokenizerError

    mid = ref.id
    out = [] if out is None else out
    t0 = time.perf_counter()

    def load() -> Any:
        image_onnx, text_onnx = onnx_towers(ref)
        return OnnxClipEmbedder(image_onnx, text_onnx, providers=providers, expected_source=ref.derived_from or None)

    try:
        emb = load()
    except (ClipLoadError, OnnxClipError, PreprocessError, TokenizerError) as exc:
        out.append(CheckResult(model=mid, check="load", status=FAIL, expected="the ONNX towers load on onnxruntime",
                               got=str(exc), seconds=time.perf_counter() - t0))
        return out, None
    out.append(CheckResult(model=mid, check="load", status=PASS, expected="the ONNX towers load on onnxruntime",
                           got=f"ONNX towers derived from {emb.derived_from or '?'} on {', '.join(emb.providers)}",
                           seconds=time.perf_counter() - t0))
    out.append(preprocess_config_check(mid, emb.preprocess_cfg, spec))
    out.append(preprocess_check(mid, emb.transform, spec, emb.image_size))
    names = [z.image for z in spec.zero_shot]
    captions = [z.caption for z in spec.zero_shot]
    t = time.perf_counter()
    images = [load_rgb(n, probes_dir) for n in names]
    raw_i, raw_t = emb.images(images, normalize=False), emb.texts(captions, normalize=False)
    embed_s = time.perf_counter() - t

    def reload(first: Any) -> CheckResult:
        import numpy as np

        try:
            again = load()
        except (ClipLoadError, OnnxClipError) as exc:
            return CheckResult(model=mid, check="determinism.reload", status=FAIL, expected="a second load",
                               got=str(exc))
        second = np.concatenate([_unit_rows(again.images(images, normalize=False)),
                                 _unit_rows(again.texts(captions, normalize=False))])
        return checks.determinism(mid, first, second, tolerance=spec.determinism_tolerance,
                                  check="determinism.reload", what="first load - second load")

    values, _ = embedding_checks(ref, spec, emb, images, names, captions,
                                 (raw_i, raw_t, str(raw_i.dtype), str(raw_t.dtype)), embed_s, out, reload=reload)
    return out, values


def _reload(mid: str, ref: ModelRef, spec: ClipSpec, weights: Path, config: Path | None, images: list[Any],
            captions: list[str]) -> Any:
    return lambda first: _reload_check(mid, ref, spec, weights, config, images, captions, first)


def _reload_check(mid: str, ref: ModelRef, spec: ClipSpec, weights: Path, config: Path | None, images: list[Any],
                  captions: list[str], first: Any) -> CheckResult:
    """Load the model a second time from its files and embed again: whatever was initialised at
    random instead of loaded (or depends on state left by the first run) shows up here."""
    import numpy as np

    try:
        again = load_clip(arch=ref.arch, weights=weights, config=config, declared_quick_gelu=spec.quick_gelu)
    except ClipLoadError as exc:
        return CheckResult(model=mid, check="determinism.reload", status=FAIL, expected="a second load", got=str(exc))
    raw_img, raw_txt = encode_raw(again, images, captions)
    return checks.determinism(mid, first, np.concatenate([_normed(raw_img), _normed(raw_txt)]),
                              tolerance=spec.determinism_tolerance, check="determinism.reload",
                              what="first load - second load")


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
