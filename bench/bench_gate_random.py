"""How often random weights slip through the gate's semantic checks, and the demo gate's wall time.

    PYTHONPATH=$PWD /work/venv-ml/bin/python bench/bench_gate_random.py [--seeds 50]

For N random initialisations of the demo CLIP architecture it prints the fraction that pass
(a) the old single-triple paraphrase test (each caption nearer its paraphrase than one unrelated
caption, 2 triples), (b) the current ``text_paraphrase`` check (every pair's paraphrase nearest
among all pairs' paraphrases, by more than the declared margin), (c) ``layer_norms`` and the whole
zero-shot suite. For N random recognizers of the demo face graph it prints the fraction passing
``distinct_faces``. Then the wall time of the whole demo gate (goldens present), 3 runs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OLD_TRIPLES = [("a red circle", "a circle that is red", "a blue square"),
               ("a green triangle", "a picture of a green triangle", "a white circle")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=50)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from mlfreeze_runtime import clip as vclip
    from mlfreeze_runtime.verify import checks, clip_checks, spec
    from mlfreeze_runtime.verify.probes import load_rgb

    manifest = tomllib.loads((ROOT / "src" / "mlfreeze" / "specs" / "models.toml").read_text())
    cspec = spec.parse_clip("demo-clip", manifest["models"]["demo-clip"]["verify"])
    config = vclip.read_config(ROOT / "src" / "mlfreeze" / "specs" / "demo" / "demo_clip_config.json")
    old = new = ln = zs = 0
    images = [load_rgb(z.image) for z in cspec.zero_shot]
    for seed in range(args.seeds):
        torch.manual_seed(1000 + seed)
        model = vclip.build_architecture("mlfreeze-demo-clip", config).eval()
        import open_clip

        tok = open_clip.get_tokenizer("mlfreeze-demo-clip")
        pp = vclip.preprocess_for(config["preprocess_cfg"], 32)

        def texts(caps: list[str], model=model, tok=tok) -> np.ndarray:
            with torch.no_grad():
                return torch.nn.functional.normalize(model.encode_text(tok(caps)), dim=-1).numpy()

        old += all(float((e := texts(list(t)))[0] @ e[1] - e[0] @ e[2]) > 0 for t in OLD_TRIPLES)
        pairs = cspec.paraphrases
        r = checks.paraphrase_margin("m", texts([a for a, _ in pairs]), texts([p for _, p in pairs]),
                                     [a for a, _ in pairs], margin=cspec.paraphrase_margin)
        new += r.status == "pass"
        ln += clip_checks.layer_norms("m", model).status == "pass"
        from PIL import Image

        with torch.no_grad():
            img = torch.nn.functional.normalize(model.encode_image(torch.stack([pp(Image.fromarray(i))
                                                                                for i in images])), dim=-1).numpy()
        sims = checks.cosine_matrix(img, texts([z.caption for z in cspec.zero_shot]))
        zs += all(x.status == "pass" for x in clip_checks.zero_shot("m", sims, top1=cspec.top1, margin=cspec.margin,
                                                                    names=[z.image for z in cspec.zero_shot]))
    n = args.seeds
    print(f"random demo CLIPs (N={n}): old 2-triple paraphrase test passed {old}/{n} = {old / n:.2f}")
    print(f"random demo CLIPs (N={n}): text_paraphrase ({len(cspec.paraphrases)} pairs, margin "
          f"{cspec.paraphrase_margin:g}) passed {new}/{n} = {new / n:.2f}")
    print(f"random demo CLIPs (N={n}): layer_norms passed {ln}/{n}; zero-shot top-1 + margin passed {zs}/{n}")

    faces_rate(n, manifest)
    gate_time()
    return 0


def faces_rate(n: int, manifest: dict) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from mlfreeze_runtime.verify import face_checks, spec
    from mlfreeze_runtime.verify.result import ModelRef

    fspec = spec.parse_faces("demo-faces", manifest["models"]["demo-faces"]["verify"])
    passed = 0
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ROOT / "src" / "mlfreeze" / "specs" / "demo" / "faces" / "det_10g.onnx", tmp)
        for seed in range(n):
            model = onnx.load(str(ROOT / "src" / "mlfreeze" / "specs" / "demo" / "faces" / "w600k_r50.onnx"))
            rng = np.random.default_rng(seed)
            for i, init in enumerate(model.graph.initializer):
                a = numpy_helper.to_array(init)
                if a.size > 1:
                    new = (rng.standard_normal(a.shape) * a.std()).astype(a.dtype)
                    model.graph.initializer[i].CopyFrom(numpy_helper.from_array(new, init.name))
            onnx.save(model, str(Path(tmp) / "w600k_r50.onnx"))
            ref = ModelRef(id="r", kind="insightface", arch="", embed_dim=128,
                           files={n_: Path(tmp) / n_ for n_ in ("det_10g.onnx", "w600k_r50.onnx")},
                           verify=manifest["models"]["demo-faces"]["verify"])
            results, _ = face_checks.run(ref, fspec, providers=["CPUExecutionProvider"], expected_providers=[])
            passed += next(r.status for r in results if r.check == "distinct_faces") == "pass"
    print(f"random demo face recognizers (N={n}): distinct_faces passed {passed}/{n} = {passed / n:.2f}")


def gate_time() -> None:
    from mlfreeze.models.fetch import fetch_set
    from mlfreeze.models.manifest import load_manifest
    from mlfreeze.models.verification import model_refs
    from mlfreeze_runtime.verify import gate

    man = load_manifest(ROOT / "src" / "mlfreeze" / "specs" / "models.toml")
    with tempfile.TemporaryDirectory() as tmp:
        refs = model_refs(man, fetch_set(man, "demo", cache_dir=Path(tmp)),
                          ROOT / "src" / "mlfreeze" / "specs" / "goldens")
        times = []
        for _ in range(3):
            t = time.perf_counter()
            run = gate.run(refs)
            times.append(time.perf_counter() - t)
        assert not [r for r in run.results if r.status == "fail"], "the demo gate failed"
    print(f"demo gate (both models, {len(run.results)} checks, in-process): median {statistics.median(times):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    sys.exit(main())
