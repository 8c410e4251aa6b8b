"""photo-search start-up and search times (not a test): prints a small table.

    python bench/bench_app.py [RUNS] [--python-lite PY] [--python-full PY]

lite: a Python without torch (default: the one running this script). full: a Python with the
ML stack (default /work/venv-ml/bin/python); it also indexes 200 synthetic images with a tiny
random open_clip model and times ``search`` end to end. In-process, it times the lite name
search over 100,000 file names.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

from mlfreeze import _proc as proc  # noqa: E402

TINY = r"""
import json, sys, hashlib
from pathlib import Path
import numpy as np, torch, open_clip
from PIL import Image
from safetensors.torch import save_file
out, photos = Path(sys.argv[1]), Path(sys.argv[2])
cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8, "head_width": 32},
       "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
(out / "m").mkdir(parents=True)
(out / "m" / "bench-tiny.json").write_text(json.dumps(cfg))
open_clip.add_model_config(out / "m" / "bench-tiny.json")
torch.manual_seed(0)
save_file({k: v.contiguous() for k, v in open_clip.create_model("bench-tiny").state_dict().items()},
          str(out / "m" / "w.safetensors"))
(out / "models.json").write_text(json.dumps({"schema_version": 1, "set": "bench", "models": [
    {"id": "bench-tiny", "kind": "clip", "arch": "bench-tiny", "embed_dim": 32,
     "files": {"w.safetensors": "m/w.safetensors"}, "config": "m/bench-tiny.json"}]}))
photos.mkdir()
rng = np.random.default_rng(0)
for i in range(200):
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(photos / f"img_{i:03d}.png")
"""


def timed(cmd: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = proc.capture(cmd, env=env, timeout=600)
        times.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.strip().splitlines()[-1:]}")
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="?", type=int, default=3)
    ap.add_argument("--python-lite", default=sys.executable)
    ap.add_argument("--python-full", default="/work/venv-ml/bin/python")
    a = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'examples'}", "FORCE_CPU": "1"}
    env.pop("MLFREEZE_MODELS_DIR", None)
    rows = []
    for label, py in (("lite", a.python_lite), ("full", a.python_full)):
        for args in (["--version"], ["--health"]):
            cmd = [py, "-m", "photo_search", *args]
            rows.append((f"{label}: photo-search {' '.join(args)}", timed(cmd, env, a.runs)))
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        r = proc.capture([a.python_full, "-c", TINY, str(t / "models"), str(t / "photos")], env=env, timeout=600)
        if r.returncode != 0:
            raise SystemExit(f"making the tiny model failed: {r.stderr.strip()[-300:]}")
        fenv = {**env, "MLFREEZE_MODELS_DIR": str(t / "models")}
        base = [a.python_full, "-m", "photo_search"]
        rows.append(("full: index 200 images (256x256), tiny CLIP, CPU",
                     timed([*base, "index", str(t / "photos"), "--index", str(t / "idx"), "--rebuild"], fenv, 1)))
        rows.append(("full: search 'a dog' -k 10 (process start to exit)",
                     timed([*base, "search", "a dog", "--index", str(t / "idx")], fenv, a.runs)))

    from photo_search.index import search_names

    names = [f"/photos/{y}/IMG_{i:06d}_{'beach' if i % 7 == 0 else 'city'}.jpg"
             for y in range(2000, 2010) for i in range(10_000)]
    t0 = time.perf_counter()
    hits = search_names(names, "beach 2004", 10)
    rows.append((f"in-process: name search over {len(names):,} names ({len(hits)} hits)", time.perf_counter() - t0))

    width = max(len(r[0]) for r in rows)
    for name, secs in rows:
        print(f"{name:<{width}}  {secs * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
