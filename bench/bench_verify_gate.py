"""Gate wall time for the default CLIP architecture (random weights: same compute as the real
ViT-B/32), load and checks separately, and image-embedding throughput at batch 1 and 32.

    PYTHONPATH=$PWD:$PWD/examples /work/venv-ml/bin/python bench/bench_verify_gate.py [--device cpu]

Faces cannot be timed here with buffalo_l's weights (not reachable from this machine); the demo
face models are timed instead as a floor, and bench/bench_face_compute.py times buffalo_l's two
architectures with random weights. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args(argv)

    import torch
    from safetensors.torch import save_file

    from mlfreeze_runtime import clip as vclip
    from mlfreeze_runtime.verify import clip_checks, face_checks, spec
    from mlfreeze_runtime.verify.result import ModelRef

    manifest = tomllib.loads((ROOT / "src" / "mlfreeze" / "specs" / "models.toml").read_text())
    table = manifest["models"]["clip-vit-b-32-openai"]["verify"]
    cspec = spec.parse_clip("clip-vit-b-32-openai", table)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = vclip.build_architecture("ViT-B-32-quickgelu")
        weights = Path(tmp) / "open_clip_model.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
        del model
        print(f"random ViT-B-32-quickgelu weights: {weights.stat().st_size / 1e6:.0f} MB")

        t = time.perf_counter()
        loaded = vclip.load_clip(arch="ViT-B-32-quickgelu", weights=weights, config=None,
                                 declared_quick_gelu=True)
        load_s = time.perf_counter() - t
        print(f"clip load (strict, from local file): {load_s:.2f} s")

        ref = ModelRef(id="clip-vit-b-32-openai", kind="clip", arch="ViT-B-32-quickgelu", embed_dim=512,
                       files={"open_clip_model.safetensors": weights}, verify=table, golden=None,
                       roles={"open_clip_model.safetensors": "weights"})
        t = time.perf_counter()
        results, _ = clip_checks.run(ref, cspec, device=args.device)
        total_s = time.perf_counter() - t
        load_in_run = next(r.seconds for r in results if r.check == "load")
        failed = [r.check for r in results if r.status == "fail"]
        print(f"clip gate: total {total_s:.2f} s = load {load_in_run:.2f} s + checks {total_s - load_in_run:.2f} s "
              f"({len(results)} checks; random weights fail: {', '.join(failed)})")

        emb = vclip.ClipEmbedder(loaded, args.device)
        x = torch.randn(32, 3, 224, 224)
        for batch in (1, 32):
            xb = x[:batch].to(args.device)
            with torch.no_grad():
                emb.model.encode_image(xb)  # warm-up
                times = []
                for _ in range(args.iters):
                    t = time.perf_counter()
                    emb.model.encode_image(xb)
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t)
            print(f"image embedding, batch {batch:2d}: {batch / statistics.median(times):.1f} images/s "
                  f"(median of {args.iters})")

    fm = manifest["models"]["demo-faces"]
    fref = ModelRef(id="demo-faces", kind="insightface", arch="", embed_dim=fm["embed_dim"],
                    files={a["file"]: ROOT / "src" / "mlfreeze" / "specs" / a["urls"][0] for a in fm["artifacts"]},
                    verify=fm["verify"], golden=ROOT / "src" / "mlfreeze" / "specs" / "goldens" / "demo-faces.json")
    t = time.perf_counter()
    fres, _ = face_checks.run(fref, spec.parse_faces("demo-faces", fm["verify"]),
                              providers=["CPUExecutionProvider"], expected_providers=["CPUExecutionProvider"])
    print(f"faces gate (demo models; buffalo_l not measurable here): {time.perf_counter() - t:.2f} s, "
          f"{len(fres)} checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
