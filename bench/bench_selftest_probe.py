"""What the app probe adds to the self-test: ``selftest.main`` on a bundle-shaped demo models
folder, gate only (``--no-app-probe``) and gate + probe of ``python -m photo_search``.

    PYTHONPATH=$PWD:$PWD/examples /work/venv-ml/bin/python bench/bench_selftest_probe.py [--runs 2]

Prints one line per run and the median ratio (with probe / without).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the demo set's bundle layout is the tests' shared helper


def timed(models: Path, extra: list[str]) -> float:
    from mlfreeze_runtime.verify import selftest

    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = selftest.main(["--models-dir", str(models), "--json", *extra])
    if rc != 0:
        raise SystemExit(f"self-test failed (exit {rc})")
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    from demo_models import lay_out_demo_models

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args(argv)
    app = f"{sys.executable} -m photo_search"
    with tempfile.TemporaryDirectory(prefix="bench-selftest-") as tmp:
        models = lay_out_demo_models(Path(tmp) / "models")
        without, with_probe = [], []
        for i in range(args.runs):
            without.append(timed(models, ["--no-app-probe"]))
            with_probe.append(timed(models, ["--app", app]))
            print(f"run {i + 1}: gate only {without[-1]:.1f} s, gate + app probe {with_probe[-1]:.1f} s")
    a, b = statistics.median(without), statistics.median(with_probe)
    print(f"median: gate only {a:.1f} s, with app probe {b:.1f} s, ratio {b / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
