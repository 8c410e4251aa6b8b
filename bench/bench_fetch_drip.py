"""Time for `mlfreeze fetch` to give up on a server that drips 1 byte per second, with the
default MLFREEZE_FETCH_* settings, retries included (target: exit 3 within 120 s).

    PYTHONPATH=.:bench /work/venv-ml/bin/python bench/bench_fetch_drip.py [--rate 1] [--urls 1]

Runs the real CLI in a subprocess against the benchmark server's ``/drip/<rate>/`` route
(``--urls N``: N dripping mirrors in a row), every MLFREEZE_* variable removed from its
environment. Prints the exit code, the seconds to exit and the error line.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_fetch_common import served_random_file

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1.0, help="bytes per second the server sends")
    ap.add_argument("--urls", type=int, default=1)
    a = ap.parse_args()
    size = 1 << 20
    with served_random_file(size) as served:
        urls = ", ".join(f'"{served.base}/drip/{a.rate:g}/a.bin?{i}"' for i in range(a.urls))
        manifest = served.work / "models.toml"
        manifest.write_text(f'[sets]\nt = ["m"]\n[models.m]\nkind = "insightface"\nembed_dim = 4\nlicense = "x"\n'
                            f'[[models.m.artifacts]]\nfile = "a.bin"\nsha256 = "{served.sha}"\nsize = {size}\n'
                            f"urls = [{urls}]\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFREEZE_")}
        env["PYTHONPATH"] = str(ROOT)
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "mlfreeze", "fetch", "--manifest", str(manifest), "--cache",
                              str(served.work / "cache"), "--set", "t"], env=env, capture_output=True, text=True)
        took = time.perf_counter() - t
    last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""
    print(f"drip {a.rate:g} B/s on {a.urls} URL(s), default settings: exit {out.returncode} after {took:.1f}s "
          f"(target: exit 3 within {120 * a.urls} s)")
    print(f"error line: {last}")


if __name__ == "__main__":
    main()
