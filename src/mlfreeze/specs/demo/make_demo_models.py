"""Make the demo model set (src/mlfreeze/specs/demo/): a tiny trained CLIP and two tiny face ONNX models.

Reproducible: fixed seeds, single thread, CPU. Run from the repository root:

    PYTHONPATH=$PWD /work/venv-ml/bin/python src/mlfreeze/specs/demo/make_demo_models.py [--out src/mlfreeze/specs/demo]

Writes ``demo_clip.safetensors`` (fp16 weights), ``demo_clip_config.json`` (open_clip's
``{"model_cfg", "preprocess_cfg"}`` layout, registered under :data:`ARCH`), and
``faces/det_10g.onnx`` + ``faces/w600k_r50.onnx`` (insightface's SCRFD and ArcFace layouts, so
``FaceAnalysis`` loads them from a folder). It then prints each file's sha256 and size for
src/mlfreeze/specs/models.toml. The CLIP is trained on coloured shapes until it passes its declared probes
(zero-shot top-1 = 1.0 on the canonical renders); the same architecture at random init fails.
The set has the default set's interface (ViT-B/32 and buffalo_l): 512-d CLIP embeddings of 224 px
images and 77-token captions (open_clip's BPE vocabulary), a detector run at 640 px and a
recognizer of 112 px aligned crops giving 512-d embeddings, so an app written for the real
models runs on it unchanged.
Bit-identical weights are only promised for the same torch version and CPU; the committed
files and their pinned sha256 are the reference, and the goldens are pinned from them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ARCH = "mlfreeze-demo-clip"
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
# ViT-B/32's interface (512-d embeddings, 224 px input in 32 px patches, 77-token context, the
# 49,408-token BPE vocabulary, QuickGELU) on a tiny body: two layers per tower, one 64-wide
# vision head (OpenAI's CLIP class derives vision heads as width // 64, so `clip.load` can build
# it too) and a 32-wide text tower, whose token embedding is most of the file.
MODEL_CFG: dict[str, Any] = {
    "embed_dim": 512,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 64, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
PREPROCESS_CFG = {"mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"}
TEMPLATES = ("a {c} {s}", "a {s} that is {c}", "a picture of a {c} {s}")


def demo_config() -> dict[str, Any]:
    return {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}


# ------------------------------------------------------------------------------------- CLIP

def _renders(rng: Any, n: int) -> tuple[list[Any], list[int], list[tuple[str, str]]]:
    """``n`` random 64-px renders (position, size, background jitter, noise of a random amplitude)
    with their class index."""
    import numpy as np

    from mlfreeze_runtime.verify.probes import COLOURS, SHAPES, render_shape

    classes = [(c, s) for c in COLOURS for s in SHAPES]
    images, labels = [], []
    for _ in range(n):
        k = int(rng.integers(len(classes)))
        c, s = classes[k]
        bg = tuple(int(v) for v in rng.integers(0, 70, size=3))
        img = render_shape(c, s, cx=float(rng.uniform(0.35, 0.65)), cy=float(rng.uniform(0.35, 0.65)),
                           radius=float(rng.uniform(0.18, 0.34)), background=bg)  # type: ignore[arg-type]
        amp = int(rng.integers(0, 13))  # some renders are clean, as the probes are: noise is no cue
        noise = rng.integers(-amp, amp + 1, size=img.shape)
        images.append(np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8))
        labels.append(k)
    return images, labels, classes


def _upscaled(images: list[Any], size: int) -> Any:
    """uint8 (N, 3, size, size): each 64-px render resized as the probes are (PIL bicubic, the
    shortest side to ``size``); normalised by :func:`_batch`."""
    import numpy as np
    import torch
    from PIL import Image

    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    for i, im in enumerate(images):
        big = Image.fromarray(im).resize((size, size), Image.Resampling.BICUBIC)
        out[i] = torch.from_numpy(np.asarray(big, dtype=np.uint8).transpose(2, 0, 1).copy())
    return out


def _batch(x: Any) -> Any:
    """uint8 (N, 3, H, W) -> the model's normalised float input."""
    import torch

    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def train_clip(out: Path, *, steps: int = 1500, seed: int = 0, renders: int = 6000) -> None:
    """Train the demo CLIP on ``renders`` random renders (upscaled once) until it passes its probes."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from mlfreeze_runtime import clip as vclip

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    size = MODEL_CFG["vision_cfg"]["image_size"]
    model = vclip.build_architecture(ARCH, demo_config())
    preprocess = vclip.preprocess_for(demo_config()["preprocess_cfg"], size)
    tokenizer = open_clip.get_tokenizer(ARCH)

    import numpy as np

    rng = np.random.default_rng(seed)
    images, labels, classes = _renders(rng, renders)
    x = _upscaled(images, size)  # renders x 150 KB, held as bytes
    y = torch.tensor(labels)
    del images
    captions = [[t.format(c=c, s=s) for t in TEMPLATES] for c, s in classes]
    tokens = torch.stack([tokenizer(cs) for cs in captions])  # (classes, templates, ctx)

    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(seed)
    model.train()
    step, limit = 0, steps
    while step < limit:
        idx = torch.randint(0, len(x), (64,), generator=g)
        cls = y[idx]
        tmpl = torch.randint(0, len(TEMPLATES), (len(classes),), generator=g)
        img_f = torch.nn.functional.normalize(model.encode_image(_batch(x[idx])), dim=-1)
        txt_f = torch.nn.functional.normalize(model.encode_text(tokens[torch.arange(len(classes)), tmpl]), dim=-1)
        logits = model.logit_scale.exp() * img_f @ txt_f.T  # (batch, classes)
        loss = torch.nn.functional.cross_entropy(logits, cls)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
        if step % 100 == 0 or step == limit - 1:
            print(f"step {step:5d} loss {loss.item():.4f}", flush=True)
        step += 1
        if step == limit:
            # trained until it passes its own declared probes (more steps if needed, up to 2x)
            acc, margin = probe_accuracy(model, preprocess, tokenizer)
            print(f"probes after {step} steps: top-1 {acc:.2f}, min margin {margin:.3f}", flush=True)
            if (acc < 1.0 or margin < 0.05) and limit < 2 * steps:
                limit += 250
                model.train()
    if acc < 1.0 or margin < 0.05:
        raise SystemExit(f"the demo CLIP did not learn its probes in {limit} steps (top-1 {acc:.2f})")

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "demo_clip.safetensors"), metadata={"arch": ARCH})  # one key: Rust map order is random
    (out / "demo_clip_config.json").write_text(json.dumps(demo_config(), indent=2) + "\n")


def probe_accuracy(model: Any, preprocess: Any, tokenizer: Any) -> tuple[float, float]:
    """Zero-shot top-1 and the smallest right-minus-best-wrong margin on the canonical renders."""
    import torch
    from PIL import Image

    from mlfreeze_runtime.verify.probes import COLOURS, SHAPES, render_shape

    model.eval()
    classes = [(c, s) for c in COLOURS for s in SHAPES]
    with torch.no_grad():
        img = torch.stack([preprocess(Image.fromarray(render_shape(c, s))) for c, s in classes])
        i = torch.nn.functional.normalize(model.encode_image(img), dim=-1)
        t = torch.nn.functional.normalize(model.encode_text(tokenizer([f"a {c} {s}" for c, s in classes])), dim=-1)
        sims = i @ t.T
    right = sims.diag()
    wrong = (sims - 10 * torch.eye(len(classes))).max(dim=1).values
    return float((right > wrong).float().mean()), float((right - wrong).min())


# ------------------------------------------------------------------------------------- faces

def _const(name: str, array: Any) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(array, name=name)


def make_detector(path: Path) -> None:
    """An SCRFD-layout detector (9 outputs: 3 strides x scores, boxes, keypoints, 2 anchors).

    It "detects" bright square tiles: the stride-32 score is a sigmoid of the local mean
    brightness over a 96-px window; strides 8 and 16 never fire. Boxes are 160 px around the
    window, keypoints at fixed places inside it. Good enough to drive FaceAnalysis end to end.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    nodes, inits, outputs = [], [], []
    inits += [_const("k", np.array(12.0, np.float32)), _const("t", np.array(0.35, np.float32)),
              _const("zero", np.array(0.0, np.float32)), _const("shape_1", np.array([-1, 1], np.int64)),
              _const("shape_4", np.array([-1, 4], np.int64)), _const("shape_10", np.array([-1, 10], np.int64)),
              _const("box", np.array([[1.5, 1.5, 3.5, 3.5]], np.float32)),
              _const("kps", (np.array([[0.9, 1.0], [2.1, 1.0], [1.5, 1.6], [1.0, 2.2], [2.0, 2.2]], np.float32)
                             - 0.5).reshape(1, 10)),
              _const("never", np.array(-20.0, np.float32))]
    nodes.append(helper.make_node("ReduceMean", ["input.1"], ["gray"], axes=[1], keepdims=1))
    scores, boxes, kpss = {}, {}, {}
    for s in (8, 16, 32):
        if s == 32:
            nodes.append(helper.make_node("AveragePool", ["gray"], [f"pool{s}"], kernel_shape=[96, 96],
                                          strides=[32, 32], pads=[32, 32, 32, 32], count_include_pad=0))
        else:
            nodes.append(helper.make_node("AveragePool", ["gray"], [f"pool{s}"], kernel_shape=[s, s],
                                          strides=[s, s]))
        # (1,1,h,w) -> (h*w,1)
        nodes.append(helper.make_node("Reshape", [f"pool{s}", "shape_1"], [f"flat{s}"]))
        if s == 32:
            nodes.append(helper.make_node("Sub", [f"flat{s}", "t"], [f"c{s}"]))
            nodes.append(helper.make_node("Mul", [f"c{s}", "k"], [f"z{s}"]))
        else:
            nodes.append(helper.make_node("Mul", [f"flat{s}", "zero"], [f"m{s}"]))
            nodes.append(helper.make_node("Add", [f"m{s}", "never"], [f"z{s}"]))
        nodes.append(helper.make_node("Sigmoid", [f"z{s}"], [f"sig{s}"]))
        nodes.append(helper.make_node("Mul", [f"flat{s}", "zero"], [f"zeros{s}"]))
        nodes.append(helper.make_node("Add", [f"zeros{s}", "box"], [f"b{s}"]))
        nodes.append(helper.make_node("Add", [f"zeros{s}", "kps"], [f"k{s}"]))
        # two anchors per position: (h*w, c) -> (h*w, 2c) -> (2*h*w, c)
        for src, dst, shp in ((f"sig{s}", f"score_{s}", "shape_1"), (f"b{s}", f"bbox_{s}", "shape_4"),
                              (f"k{s}", f"kps_{s}", "shape_10")):
            nodes.append(helper.make_node("Concat", [src, src], [f"{dst}_2"], axis=1))
            nodes.append(helper.make_node("Reshape", [f"{dst}_2", shp], [dst]))
        scores[s], boxes[s], kpss[s] = f"score_{s}", f"bbox_{s}", f"kps_{s}"
    for group, width in ((scores, 1), (boxes, 4), (kpss, 10)):
        for s in (8, 16, 32):
            outputs.append(helper.make_tensor_value_info(group[s], TensorProto.FLOAT, ["N", width]))
    graph = helper.make_graph(
        nodes, "mlfreeze_demo_detector",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "H", "W"])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mlfreeze")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


IDENTITIES = 3  # the demo "people": the tiles of render_faces(3), told apart by their band height
EMBED_FACES = 512  # buffalo_l's recognition size (w600k_r50: 512-d)


def _recognizer_graph(w: Any, b: Any) -> Any:
    """ArcFace layout: (N,3,112,112) -> row profile (mean over the width) -> standardised per crop
    (zero mean, unit variance: brightness and contrast drop out) -> Gemm(W, B)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["input.1"], ["rows"], axes=[3], keepdims=0),
             helper.make_node("Flatten", ["rows"], ["flat"], axis=1),
             helper.make_node("ReduceMean", ["flat"], ["mu"], axes=[1], keepdims=1),
             helper.make_node("Sub", ["flat", "mu"], ["centred"]),
             helper.make_node("Mul", ["centred", "centred"], ["sq"]),
             helper.make_node("ReduceMean", ["sq"], ["var"], axes=[1], keepdims=1),
             helper.make_node("Add", ["var", "eps"], ["var_eps"]),
             helper.make_node("Sqrt", ["var_eps"], ["sd"]),
             helper.make_node("Div", ["centred", "sd"], ["z"]),
             helper.make_node("Gemm", ["z", "W", "B"], ["683"])]
    graph = helper.make_graph(
        nodes, "mlfreeze_demo_recognizer",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", int(w.shape[1])])],
        [_const("W", w.astype(np.float32)), _const("B", b.astype(np.float32)),
         _const("eps", np.array(1e-6, np.float32))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mlfreeze")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _variants(img: Any) -> list[Any]:
    """The same picture as a camera might give it: shifted by part of a detector stride (so the
    detector's boxes land elsewhere), relit, gamma-curved and slightly out of focus. Not the gate's augmentations."""
    import numpy as np

    out = []
    for dy, dx in ((0, 0), (12, 0), (0, 20), (24, 8), (-16, 12)):
        out.append(np.roll(img, (dy, dx), axis=(0, 1)))
    f = img.astype(np.float32)
    out.append(np.clip(f * 0.85 + 20, 0, 255).astype(np.uint8))
    out.append(np.clip(f * 1.1 - 8, 0, 255).astype(np.uint8))
    for g in (0.7, 1.15):
        out.append(np.clip(255.0 * (f / 255.0) ** g, 0, 255).astype(np.uint8))
    # a 3x3 box blur: slightly out of focus
    soft = sum(np.roll(f, (dy, dx), axis=(0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0
    out.append(np.clip(soft, 0, 255).astype(np.uint8))
    return [np.ascontiguousarray(v) for v in out]


def _identity_profiles(detector: Path) -> tuple[Any, Any]:
    """``(profiles, labels)``: standardised row profiles of the demo identities as FaceAnalysis crops
    them, over :func:`_variants` of each picture. Labels ``0..n-1`` are the tiles of
    ``render_faces`` given as BGR (right); ``n..2n-1`` the same tiles with their colour channels
    swapped (the picture handed over as RGB), which the recognizer is taught to see as other people."""
    import shutil
    import tempfile

    import numpy as np
    import onnx
    from insightface.app import FaceAnalysis

    from mlfreeze_runtime.verify.probes import render_faces

    with tempfile.TemporaryDirectory(prefix="mlfreeze-demo-rec-") as tmp:
        shutil.copyfile(detector, Path(tmp) / "det_10g.onnx")
        eye = np.eye(3 * 112, dtype=np.float32)
        onnx.save(_recognizer_graph(eye, np.zeros(3 * 112, np.float32)), str(Path(tmp) / "w600k_r50.onnx"))
        app = FaceAnalysis(name=tmp, allowed_modules=["detection", "recognition"], providers=["CPUExecutionProvider"])
        app.prepare(ctx_id=-1, det_size=(640, 640), det_thresh=0.5)
        rgb = render_faces(IDENTITIES)
        rows, labels = [], []
        for offset, img in ((0, rgb[:, :, ::-1]), (IDENTITIES, rgb)):  # BGR (right), RGB handed over as BGR
            for variant in _variants(img):
                faces = sorted(app.get(variant), key=lambda f: f.bbox[0])
                if len(faces) != IDENTITIES:
                    raise SystemExit(f"the demo detector found {len(faces)} of {IDENTITIES} demo faces")
                rows += [np.asarray(f.embedding, np.float64) for f in faces]
                labels += [offset + i for i in range(IDENTITIES)]
    return np.stack(rows), np.asarray(labels)


def make_recognizer(path: Path, *, dim: int = EMBED_FACES, seed: int = 0, detector: Path | None = None) -> None:
    """An ArcFace-layout recognizer, "trained" in closed form on the demo identities: 112x112 in, ``dim`` out.

    Like a real recognizer it maps distinct identities far apart and keeps each one together
    under shifts, relighting and gamma (:func:`_variants`); a face handed over with red and blue
    swapped is a different person to it, as colour is to a recognizer trained on RGB faces. The
    weights are a linear discriminant of the identities' standardised row profiles (between-
    identity directions, whitened by the within-identity spread), scaled so the identities'
    centres are nearly equally far apart, rotated into ``dim`` dimensions at random; the bias removes
    the mean. A recognizer with random weights of the same graph keeps the profiles' large common
    part, so distinct tiles come out nearly parallel: that is what the gate's discrimination check
    sees. Needs the detector (``detector``, default ``det_10g.onnx`` beside ``path``) to crop the faces.
    """
    import numpy as np

    z, labels = _identity_profiles(detector or path.parent / "det_10g.onnx")
    classes = sorted(set(labels.tolist()))
    mean = z.mean(axis=0)
    centres = np.stack([z[labels == c].mean(axis=0) for c in classes])
    within = sum(((z[labels == c] - centres[i]).T @ (z[labels == c] - centres[i]) for i, c in enumerate(classes)),
                 np.zeros((z.shape[1], z.shape[1]))) / len(z)
    within += np.eye(len(within)) * 1e-2 * np.trace(within) / len(within)  # regularised: few samples
    evals, evecs = np.linalg.eigh(within)
    white = evecs / np.sqrt(evals)  # within-identity spread -> identity
    m = (centres - mean) @ white  # identity centres in the whitened space
    u, s, _ = np.linalg.svd(m.T, full_matrices=False)
    k = len(classes) - 1
    # centres spread nearly evenly (s ** 0.75: fully even amplifies the smallest differences, and
    # with them the wobble of the detector's 32-px box grid, past the gate's augment_min_cosine)
    proj = (white @ (u[:, :k] / s[:k] ** 0.75)).T  # (k, 336)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    wt = q[:, :k] @ proj  # (dim, 336)
    scale = float(np.abs(wt).max())
    w = np.round(wt.T / scale, 5)  # rounded so the file is the same bytes wherever numpy differs in the last bits
    b = np.round(-(w.T @ mean), 5)
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(_recognizer_graph(w, b), str(path))


def _describe(path: Path, root: Path) -> str:
    data = path.read_bytes()
    return f"{path.relative_to(root)}  sha256={hashlib.sha256(data).hexdigest()}  size={len(data)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--renders", type=int, default=6000, help="training renders (64 px, upscaled once)")
    ap.add_argument("--only", choices=("clip", "faces"), default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.only in (None, "faces"):
        make_detector(out / "faces" / "det_10g.onnx")
        make_recognizer(out / "faces" / "w600k_r50.onnx")
    if args.only in (None, "clip"):
        train_clip(out, steps=args.steps, renders=args.renders, seed=args.seed)
    for p in sorted(out.rglob("*")):
        if p.suffix in (".onnx", ".safetensors", ".json"):
            print(_describe(p, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
