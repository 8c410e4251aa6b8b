"""What faithful and faulty ONNX exports of the demo CLIP measure against torch: the figures behind the
default tolerances of ``onnx_agreement`` (min cosine) and ``reference_sims`` (reference tolerance).

    PYTHONPATH=$PWD:$PWD/tests python bench/bench_onnx_tolerances.py [--json out.json]

For every variant (tests/onnx_variants.py: the good ones, the catalogue of faults, plus a 2 %
Gaussian perturbation of each single weight matrix of either tower, one at a time) it exports the
towers, then prints, on the CPU:

* the min cosine torch vs ONNX of each tower over the demo's probes (what ``onnx_agreement`` and
  the agreement record judge);
* the largest |delta| of cos(image, its caption) against the pinned ``reference_sims`` (4 decimals)
  and against the same cosines measured on torch now (6+ decimals);
* whether the old bars (0.99999, 1e-3) and the new ones (0.999999, 2e-4) catch it.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

OLD = (0.99999, 1e-3)
NEW = (0.999999, 2e-4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--fraction", type=float, default=0.02, help="perturbation of one matrix (x its std)")
    ap.add_argument("--only", default="", help="only the variants whose label contains this")
    args = ap.parse_args(argv)

    import numpy as np
    import onnx_variants as v
    import torch

    from mlfreeze_runtime.clip import ClipEmbedder
    from mlfreeze_runtime.onnx_clip import OnnxClipEmbedder, OnnxClipError
    from mlfreeze_runtime.verify import onnx_checks
    from mlfreeze_runtime.verify.probes import load_rgb

    loaded = v.load_demo()
    names, captions = onnx_checks.probes(v.VERIFY)
    shots = [z["caption"] for z in v.VERIFY["zero_shot"]]
    images = [load_rgb(n) for n in names]
    torch_emb = ClipEmbedder(loaded, "cpu")
    pinned = np.array(v.SPEC.verify["reference_sims"], dtype=np.float64)

    def diag(emb) -> np.ndarray:
        i = np.asarray(emb.images(images), np.float64)
        t = np.asarray(emb.texts(shots), np.float64)
        if i.shape != t.shape:  # a dropped projection: the towers no longer meet
            return np.full(len(shots), np.inf)
        return np.sum(i * t, axis=1)

    torch_sims = diag(torch_emb)

    def one_matrix(tower: str, name: str, seed: int):
        def alter(model):
            p = dict(model.named_parameters())[name]
            g = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                p.add_(args.fraction * p.float().std() * torch.randn(p.shape, generator=g))
            return model
        return v.torch_fault(alter)

    variants: list[tuple[str, str, object, dict]] = [(f"good:{k}", "good", mk, agr) for k, (mk, agr) in v.GOOD.items()]
    variants += [(f"fault:{k}", "fault", mk, {}) for k, mk in v.FAULTS.items()]
    matrices = [(n, p) for n, p in loaded.model.named_parameters() if p.dim() == 2 and p.numel() >= 256
                and n != "token_embedding.weight" and n != "positional_embedding"]
    for i, (n, _) in enumerate(matrices):
        tower = "image" if n.startswith("visual.") else "text"
        variants.append((f"2%-one-matrix:{n}", f"one-matrix-{tower}", one_matrix(tower, n, 100 + i), {}))

    variants = [x for x in variants if args.only in x[0]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (label, group, make, agreement) in enumerate(variants):
            out = Path(tmp) / str(k)
            try:
                image, text = make(loaded, out)
                emb = OnnxClipEmbedder(image, text, providers=["CPUExecutionProvider"], expected_source=v.SOURCE)
            except (OnnxClipError, RuntimeError, ValueError) as exc:
                rows.append({"variant": label, "group": group, "error": str(exc).splitlines()[0][:90]})
                continue
            img, txt, _ = onnx_checks.measure(copy.copy(torch_emb), emb, images, names, captions)
            sims = diag(emb)
            row = {"variant": label, "group": group, "image_min_cosine": img.min_cosine,
                   "text_min_cosine": txt.min_cosine, "ranking_moved": len(img.moved) + len(txt.moved),
                   "ref_delta_pinned": float(np.max(np.abs(sims - pinned))),
                   "ref_delta_torch": float(np.max(np.abs(sims - torch_sims))), "declared": agreement}
            for tag, (cos_bar, ref_bar) in (("old", OLD), ("new", NEW)):
                # the declared table, its min_cosine replaced by the old or new fp32 bar
                tol = onnx_checks.tolerances(agreement)
                if tol.precision == "fp32":
                    tol = onnx_checks.Tolerances(min_cosine=cos_bar, top_k=tol.top_k)
                row[f"caught_{tag}_agreement"] = not (img.verdict(tol)[0] and txt.verdict(tol)[0])
                row[f"caught_{tag}_reference"] = bool(row["ref_delta_pinned"] > ref_bar)
            rows.append(row)
            print(_line(row), flush=True)
    print()
    for group in sorted({r["group"] for r in rows}):
        sel = [r for r in rows if r["group"] == group and "error" not in r]
        errs = [r for r in rows if r["group"] == group and "error" in r]
        if sel:
            worst = max(min(r["image_min_cosine"], r["text_min_cosine"]) for r in sel)
            deltas = [r["ref_delta_pinned"] for r in sel]
            counts = {key: sum(r[key] for r in sel) for key in ("caught_old_agreement", "caught_new_agreement",
                                                                 "caught_old_reference", "caught_new_reference")}
            print(f"{group}: {len(sel)} measured ({len(errs)} refused at load); highest min cosine {worst:.7f}; "
                  f"reference delta {min(deltas):.2e}..{max(deltas):.2e}; caught: agreement old "
                  f"{counts['caught_old_agreement']}/{len(sel)} new {counts['caught_new_agreement']}/{len(sel)}, "
                  f"reference old {counts['caught_old_reference']}/{len(sel)} "
                  f"new {counts['caught_new_reference']}/{len(sel)}")
        for r in errs:
            print(f"{group}: {r['variant']}: refused at load: {r['error']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def _line(r: dict) -> str:
    return (f"{r['variant']:<58} image {r['image_min_cosine']:.7f} text {r['text_min_cosine']:.7f} "
            f"moved {r['ranking_moved']:>2} ref|d| pinned {r['ref_delta_pinned']:.2e} torch {r['ref_delta_torch']:.2e} "
            f"caught old {'A' if r['caught_old_agreement'] else '-'}{'R' if r['caught_old_reference'] else '-'} "
            f"new {'A' if r['caught_new_agreement'] else '-'}{'R' if r['caught_new_reference'] else '-'}")


if __name__ == "__main__":
    raise SystemExit(main())
