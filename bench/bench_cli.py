"""Start-up time of `mlfreeze --help` and `mlfreeze plan` (targets: well under 1 s; plan < 0.5 s).

Runs each command N times in a fresh interpreter and prints the median wall time and
whether any ML module was imported. Usage: python bench/bench_cli.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "insightface", "onnxruntime", "PyInstaller", "numpy", "faiss")
COMMANDS = {
    "--help": ["--help"],
    "plan linux-cuda --json": ["plan", "--platform", "linux-cuda", "--json"],
    "plan mac-arm64": ["plan", "--platform", "mac-arm64"],
}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    for label, args in COMMANDS.items():
        times = []
        for _ in range(n):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mlfreeze", *args], cwd=ROOT, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        probe = subprocess.run([sys.executable, "-X", "importtime", "-m", "mlfreeze", *args], cwd=ROOT,
                               capture_output=True, text=True, check=True)
        heavy = sorted({line.split("|")[-1].strip().split(".")[0] for line in probe.stderr.splitlines()
                        if line.split("|")[-1].strip().split(".")[0] in HEAVY})
        print(f"mlfreeze {label:<26} median {statistics.median(times) * 1000:6.0f} ms over {n} runs; "
              f"ML modules imported: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
