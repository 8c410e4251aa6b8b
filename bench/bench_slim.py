"""Torch vs ONNX CLIP on this CPU: export time, images/s and texts/s at batch 1 and 32, cosine agreement.

The OpenAI ViT-B/32 weights are unreachable here and the demo CLIP is too small to time, so the
model is a randomly initialised ``ViT-B-32-quickgelu`` (same graph and FLOPs as the real one;
seeded). Both sides see the same preprocessed pixels and token ids, so the timing is the model:
torch ``encode_image`` / ``encode_text`` under ``torch.inference_mode`` vs onnxruntime (CPU
execution provider, default graph optimisations) on the towers ``mlfreeze export`` writes
(``export_towers``: opset 17, dynamic batch, fp32). Both use their default thread count.

    python bench/bench_slim.py [--repeats 5] [--threads N]

Prints the export time per tower, the median throughput of each (side, tower, batch), the
ONNX/torch ratio, and the min cosine between torch and ONNX embeddings on 32 random images and
32 captions. Not gated; the target (slim >= 0.9x torch at batch 32) is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _median_rate(fn, n_items: int, repeats: int) -> float:
    fn()  # warm-up (allocations, lazy kernels)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n_items / statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch and onnxruntime intra-op threads (0: default)")
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from mlfreeze.models.export import export_towers
    from mlfreeze_runtime.clip import build_architecture

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_architecture("ViT-B-32-quickgelu").eval()
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((32, 3, 224, 224)).astype(np.float32)
    from mlfreeze_runtime.tokenizer import ClipTokenizer

    words = ["a", "photo", "of", "the", "cat", "dog", "red", "car", "tree", "running", "on", "beach", "at",
             "night", "with", "friends"]
    captions = [" ".join(rng.choice(words, size=rng.integers(3, 15))) for _ in range(32)]
    ids = ClipTokenizer()(captions)

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        paths = export_towers(model, Path(tmp), image_size=224, preprocess_cfg={"interpolation": "bicubic"},
                              context_length=77, embed_dim=512, source="bench@random")
        export_s = time.perf_counter() - t
        sizes = {k: p.stat().st_size for k, p in paths.items()}
        so = ort.SessionOptions()
        if args.threads:
            so.intra_op_num_threads = args.threads
        t = time.perf_counter()
        sess = {k: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
        load_s = time.perf_counter() - t

    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}, "
          f"model ViT-B-32-quickgelu (random init)")
    print(f"export: {export_s:.1f} s for both towers; ONNX sizes image {sizes['image'] / 1e6:.0f} MB, "
          f"text {sizes['text'] / 1e6:.0f} MB; session load {load_s:.2f} s")

    tp, ti = torch.from_numpy(pixels), torch.from_numpy(ids)

    def torch_run(tower: str, b: int):
        def go():
            with torch.inference_mode():
                return (model.encode_image(tp[:b]) if tower == "image" else model.encode_text(ti[:b])).numpy()
        return go

    def onnx_run(tower: str, b: int):
        name, data = ("pixels", pixels) if tower == "image" else ("input_ids", ids)
        return lambda: sess[tower].run(["embedding"], {name: data[:b]})[0]

    rows = []
    for tower in ("image", "text"):
        for b in (1, 32):
            rt = _median_rate(torch_run(tower, b), b, args.repeats)
            ro = _median_rate(onnx_run(tower, b), b, args.repeats)
            rows.append((tower, b, rt, ro))
            print(f"{tower:5s} batch {b:2d}: torch {rt:7.1f}/s  onnx {ro:7.1f}/s  ratio {ro / rt:.2f}x")

    def cos(a, b):
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        return float((a * b).sum(axis=1).min())

    ci = cos(torch_run("image", 32)(), onnx_run("image", 32)())
    ct = cos(torch_run("text", 32)(), onnx_run("text", 32)())
    print(f"min cosine torch vs ONNX over 32 inputs: image {ci:.7f}, text {ct:.7f}")
    at32 = [ro / rt for tower, b, rt, ro in rows if b == 32]
    print(f"target slim >= 0.9x torch at batch 32: {'met' if min(at32) >= 0.9 else 'NOT met'} "
          f"(image {at32[0]:.2f}x, text {at32[1]:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
