"""``by_name[<name>]``: each by-name load a model provides gives the embeddings of the verified files.

For every name in a model's ``provides`` (:mod:`mlfreeze_runtime.names`), the gate loads the model
the way an app does (``open_clip.create_model_and_transforms(name, pretrained=tag)`` with
``open_clip.get_tokenizer(name)``, ``create_model_from_pretrained("hf-hub:...")``, OpenAI
``clip.load(name)`` with ``clip.tokenize``, ``FaceAnalysis(name=...)``), with the resolver
installed and the hub offline, and compares its embeddings of the model's own probes with the
runtime loader's (the one every other check ran on): cosine >= :data:`MIN_COSINE` per input. So
a name that resolves to other files, another architecture (``ViT-B-32`` without QuickGELU) or
other preprocessing fails here, at build time, not in a user's app.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlfreeze_runtime.app import PROBE_MIN_COSINE
from mlfreeze_runtime.verify.result import FAIL, PASS, SKIP, CheckResult, ModelRef
from mlfreeze_runtime.verify.spec import ClipSpec, FacesSpec

MIN_COSINE = PROBE_MIN_COSINE
CLIP_PROBES = 4  # zero-shot probes compared per name (images and captions)


def _min_cos(a: Any, b: Any) -> float:
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return float((a * b).sum(-1).min())


def _torch_embed(model: Any, preprocess: Any, tokenize: Any, images: Sequence[Any], captions: Sequence[str]) -> Any:
    import numpy as np
    import torch
    from PIL import Image

    model = model.float().eval() if hasattr(model, "float") else model
    with torch.no_grad():
        x = torch.stack([preprocess(Image.fromarray(np.asarray(im))) for im in images])
        img = model.encode_image(x).float().numpy()
        txt = model.encode_text(tokenize(list(captions))).float().numpy()
    return img, txt


def _clip_load(scheme: str, ident: str, tag: str) -> tuple[Any, Any, Any]:
    """(model, preprocess, tokenize) through the library call an app makes."""
    if scheme == "clip":
        import clip

        model, preprocess = clip.load(ident, device="cpu")
        return model, preprocess, clip.tokenize
    import open_clip

    if scheme == "hf-hub":
        model, preprocess = open_clip.create_model_from_pretrained(f"hf-hub:{ident}")
        return model, preprocess, open_clip.get_tokenizer(f"hf-hub:{ident}")
    model, _, preprocess = open_clip.create_model_and_transforms(ident, pretrained=tag)
    return model, preprocess, open_clip.get_tokenizer(ident)


def clip_names(ref: ModelRef, spec: ClipSpec, *, probes_dir: Path | None) -> list[CheckResult]:
    from mlfreeze_runtime import clip as rclip
    from mlfreeze_runtime import names
    from mlfreeze_runtime.verify.probes import load_rgb

    out: list[CheckResult] = []
    if not ref.provides:
        return out
    if not rclip.torch_clip_available():
        return [CheckResult(model=ref.id, check=f"by_name[{n}]", status=SKIP, expected="the app's load",
                            got="torch/open_clip are not installed here (the slim flavor runs ONNX towers)")
                for n in ref.provides]
    probes = list(spec.zero_shot)[:CLIP_PROBES]
    images = [load_rgb(z.image, probes_dir) for z in probes]
    captions = [z.caption for z in probes]
    m = names.Model(id=ref.id, kind=ref.kind, arch=ref.arch, files=dict(ref.files), roles=dict(ref.roles),
                    verify=dict(ref.verify))
    loaded = rclip.load_clip(arch=ref.arch, weights=m.role("weights") or Path(""), config=m.role("config"),
                             declared_quick_gelu=spec.quick_gelu)
    emb = rclip.ClipEmbedder(loaded, "cpu")
    ref_img, ref_txt = emb.embed_images(images), emb.embed_texts(captions)
    for name in ref.provides:
        t0 = time.perf_counter()
        check = f"by_name[{name}]"
        expected = (f"the app's by-name load embeds {len(probes)} probes at cosine >= {MIN_COSINE} "
                    "with the verified files")
        scheme, ident, tag = names.parse(name)
        if scheme == "clip":
            try:
                import clip  # noqa: F401
            except Exception as exc:  # absent, or an old package that imports what is gone (pkg_resources)
                out.append(CheckResult(model=ref.id, check=check, status=SKIP, expected=expected,
                                       got=f"OpenAI's clip package cannot be imported here ({type(exc).__name__}: "
                                           f"{exc})".splitlines()[0]))
                continue
        try:
            model, preprocess, tokenize = _clip_load(scheme, ident, tag)
            img, txt = _torch_embed(model, preprocess, tokenize, images, captions)
            worst = min(_min_cos(img, ref_img), _min_cos(txt, ref_txt))
        except Exception as exc:  # a load that fails is this check's failure, one line
            out.append(CheckResult(model=ref.id, check=check, status=FAIL, expected=expected,
                                   got=(f"{type(exc).__name__}: {exc}".splitlines() or [""])[0],
                                   seconds=time.perf_counter() - t0))
            continue
        dims = f"{img.shape[-1]}-d"
        ok = worst >= MIN_COSINE and img.shape[-1] == ref_img.shape[-1]
        out.append(CheckResult(model=ref.id, check=check, status=PASS if ok else FAIL, expected=expected,
                               got=f"{dims}, min cosine {worst:.6f}", seconds=time.perf_counter() - t0))
    return out


def face_names(ref: ModelRef, spec: FacesSpec, *, providers: Sequence[str], probes_dir: Path | None,
               ) -> list[CheckResult]:
    import tempfile

    from mlfreeze_runtime import names
    from mlfreeze_runtime.faces import FaceEmbedder, assemble_folder, load_face_analysis, quiet_insightface
    from mlfreeze_runtime.verify.probes import load_bgr

    out: list[CheckResult] = []
    if not ref.provides:
        return out
    images = [load_bgr(f.image, probes_dir) for f in spec.faces]
    with tempfile.TemporaryDirectory(prefix="mlfreeze-byname-") as tmp:
        folder = assemble_folder({n: Path(p) for n, p in ref.files.items()}, Path(tmp))
        reference = load_face_analysis(folder, providers=providers, det_size=spec.det_size,
                                       det_thresh=spec.det_thresh)
        want = FaceEmbedder(reference).embed_faces(images)
    for name in ref.provides:
        t0 = time.perf_counter()
        check = f"by_name[{name}]"
        expected = f"FaceAnalysis(name=...) embeds the probe faces at cosine >= {MIN_COSINE} with the verified files"
        _scheme, ident, _tag = names.parse(name)
        try:
            quiet_insightface()
            from insightface.app import FaceAnalysis

            app = FaceAnalysis(name=ident, allowed_modules=["detection", "recognition"], providers=list(providers))
            app.prepare(ctx_id=-1, det_size=tuple(spec.det_size), det_thresh=spec.det_thresh)
            got = FaceEmbedder(app).embed_faces(images)
            pairs = [(a, b) for a, b in zip(want, got, strict=True) if a is not None or b is not None]
            if any(a is None or b is None for a, b in pairs):
                raise ValueError("the by-name load finds faces where the verified files do not, or the reverse")
            worst = min((_min_cos(a, b) for a, b in pairs), default=float("nan"))
        except Exception as exc:  # one line
            out.append(CheckResult(model=ref.id, check=check, status=FAIL, expected=expected,
                                   got=(f"{type(exc).__name__}: {exc}".splitlines() or [""])[0],
                                   seconds=time.perf_counter() - t0))
            continue
        out.append(CheckResult(model=ref.id, check=check, status=PASS if worst >= MIN_COSINE else FAIL,
                               expected=expected, got=f"{len(pairs)} faces, min cosine {worst:.6f}",
                               seconds=time.perf_counter() - t0))
    return out
