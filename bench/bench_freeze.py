"""Freeze benchmarks: bundle sizes, frozen vs unfrozen time to first embedding, warm vs cold rebuild.

    python bench/bench_freeze.py sizes dist/<bundle>... [--compressed]
    python bench/bench_freeze.py ttfe --bundle dist/<bundle> --exe photo-search --entry ENTRY [--runs 3] -- ARGS...
    python bench/bench_freeze.py rebuild [--flavor lite]

Each prints one line per figure (and a ratio where the issue sets a target).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlfreeze import _proc as proc  # noqa: E402
from mlfreeze.bundle.prune import tree_bytes  # noqa: E402
from mlfreeze.bundle.selftest import clean_env  # noqa: E402


def sizes(bundles: list[Path], compressed: bool) -> None:
    for bundle in bundles:
        line = f"{bundle.name}: on disk {tree_bytes(bundle) / 1e9:.3f} GB"
        if compressed:
            with tempfile.TemporaryDirectory() as tmp:
                archive = Path(tmp) / "b.tar.gz"
                started = time.monotonic()
                with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
                    tar.add(bundle, arcname=bundle.name)
                line += (f", tar.gz {archive.stat().st_size / 1e9:.3f} GB "
                         f"({time.monotonic() - started:.0f} s to compress)")
        print(line, flush=True)


def _timed(cmd: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.monotonic()
    done = proc.capture(cmd, env=env, cwd=Path(cwd), timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {done.stderr.strip().splitlines()[-1:]}")
    return time.monotonic() - started


def ttfe(bundle: Path, exe: str, entry: Path, runs: int, args: list[str]) -> None:
    """Process start to the first embedding printed: frozen bundle vs the same code in this venv."""
    bundle = bundle.resolve()
    frozen_cmd = [str(bundle / exe), *args]
    venv_cmd = [sys.executable, str(entry.resolve()), *args]
    venv_env = dict(os.environ)
    models = bundle / "models"
    if models.is_dir():
        venv_env["MLFREEZE_MODELS_DIR"] = str(models)
    frozen, unfrozen = [], []
    with tempfile.TemporaryDirectory() as cwd:
        _timed(frozen_cmd, clean_env(), cwd)  # warm the page cache for both before timing
        _timed(venv_cmd, venv_env, cwd)
        for _ in range(runs):  # alternate, same run
            frozen.append(_timed(frozen_cmd, clean_env(), cwd))
            unfrozen.append(_timed(venv_cmd, venv_env, cwd))
    f, u = statistics.median(frozen), statistics.median(unfrozen)
    print(f"time to first embedding: frozen {f:.2f} s, unfrozen {u:.2f} s, ratio {f / u:.2f} "
          f"(target <= 1.3; medians of {runs})")


def rebuild(flavor: str) -> None:
    """Cold (forced) then warm (nothing changed) freeze of a stdlib-only app, lite flavor."""
    from mlfreeze.bundle.freeze import AppConfig, FreezeRequest, freeze_bundle
    from mlfreeze.platforms.profiles import load_profile

    with tempfile.TemporaryDirectory(dir=ROOT / "build") as tmp:
        root = Path(tmp)
        (root / "tiny.py").write_text("import json, sys\nprint(json.dumps({'ml_available': False}))\n")
        app = AppConfig(app="tiny", entry=root / "tiny.py", version="0.0.1", model_set="demo",
                        sources=(root / "tiny.py",), pathex=(root,))
        kw = dict(profile=load_profile("linux-cuda"), flavor=flavor, root=root, app=app, dist_dir=root / "dist",
                  work_dir=root / "build")
        t0 = time.monotonic()
        freeze_bundle(FreezeRequest(**kw, force=True))
        cold = time.monotonic() - t0
        t0 = time.monotonic()
        freeze_bundle(FreezeRequest(**kw))
        warm = time.monotonic() - t0
    print(json.dumps({"flavor": flavor, "cold_s": round(cold, 2), "warm_s": round(warm, 3)}))
    print(f"warm rebuild / cold build: {warm / cold:.3f} (target <= 0.10)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("sizes")
    p.add_argument("bundles", nargs="+", type=Path)
    p.add_argument("--compressed", action="store_true")
    p = sub.add_parser("ttfe")
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--exe", required=True)
    p.add_argument("--entry", type=Path, required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("args", nargs="*")
    p = sub.add_parser("rebuild")
    p.add_argument("--flavor", default="lite", choices=("lite",))
    a = ap.parse_args()
    if a.cmd == "sizes":
        sizes(a.bundles, a.compressed)
    elif a.cmd == "ttfe":
        ttfe(a.bundle, a.exe, a.entry, a.runs, a.args)
    else:
        rebuild(a.flavor)


if __name__ == "__main__":
    main()
