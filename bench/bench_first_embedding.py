"""Time to first embedding of frozen bundles: process start to exit of
``<app> --mlfreeze-probe REQUEST.json`` (one caption and one image), from an empty environment.

    python bench/bench_first_embedding.py dist/*-linux-cuda-full dist/*-linux-cuda-slim [--runs 3] [--image PNG]

The image defaults to the first bundle's ``models/_probes/skimage_chelsea.png``. Prints every run,
then per bundle the median and its ratio to the first bundle's median. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def app_of(bundle: Path) -> Path:
    """The app executable: the one whose name, with ``-selftest`` added, is also in the bundle."""
    for exe in sorted(bundle.iterdir()):
        if exe.is_file() and (bundle / f"{exe.name}-selftest").is_file():
            return exe
    raise SystemExit(f"{bundle}: no <app> beside an <app>-selftest (a full or slim bundle)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--image", type=Path, default=None)
    args = ap.parse_args()
    image = args.image or args.bundles[0] / "models" / "_probes" / "skimage_chelsea.png"
    medians = []
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "req.json"
        req.write_text(json.dumps({"texts": ["a red circle"], "images": [str(image.resolve())], "faces": []}))
        for bundle in args.bundles:
            exe, times = app_of(bundle), []
            for i in range(args.runs):
                t0 = time.perf_counter()
                subprocess.run([str(exe), "--mlfreeze-probe", str(req)], env={}, check=True, capture_output=True)
                times.append(time.perf_counter() - t0)
                print(f"{bundle.name} run {i + 1}: {times[-1]:.2f} s")
            medians.append(statistics.median(times))
    for bundle, m in zip(args.bundles, medians, strict=True):
        print(f"{bundle.name}: median {m:.2f} s, {m / medians[0]:.2f}x the first bundle's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
