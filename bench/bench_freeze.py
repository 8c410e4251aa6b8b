"""Freeze benchmarks: bundle sizes, frozen vs unfrozen time to first embedding, warm vs cold rebuild,
cold freeze vs app-only update.

    python bench/bench_freeze.py sizes dist/<bundle>... [--compressed]
    python bench/bench_freeze.py ttfe --bundle dist/<bundle> --exe photo-search --entry ENTRY [--runs 3] -- ARGS...
    python bench/bench_freeze.py rebuild [--flavor lite]
    python bench/bench_freeze.py update [--platform linux-cuda] [--flavor full] [--set demo] [--keep]

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


def update(platform: str, flavor: str, model_set: str, keep: bool) -> None:
    """This checkout's app (examples/photo_search), side by side in one run: a cold freeze (forced),
    then an app-only change (a comment appended to the entry package's cli.py, restored afterwards),
    which updates the bundle in place. Both include the frozen self-test and RECORD. Works under
    build/bench-update/ (deleted afterwards unless ``keep``: a full bundle is ~5 GB)."""
    import shutil

    from mlfreeze.bundle.freeze import FreezeRequest, freeze_bundle, load_app_config
    from mlfreeze.models.fetch import fetch_set
    from mlfreeze.models.manifest import load_manifest
    from mlfreeze.models.verification import goldens_dir_for
    from mlfreeze.platforms.profiles import load_profile

    app = load_app_config(ROOT)
    manifest = load_manifest(None)
    out = ROOT / "build" / "bench-update"
    kw = dict(profile=load_profile(platform), flavor=flavor, root=ROOT, app=app, model_set=model_set,
              fetched=fetch_set(manifest, model_set, None) if flavor != "lite" else None,
              goldens_dir=goldens_dir_for(manifest.path), dist_dir=out / "dist", work_dir=out / "work")
    changed = app.entry.parent / "cli.py"
    original = changed.read_bytes()
    try:
        t0 = time.monotonic()
        bundle = freeze_bundle(FreezeRequest(**kw, force=True))
        cold = time.monotonic() - t0
        size = tree_bytes(bundle)
        changed.write_bytes(original + b"\n# bench_freeze.py update: an app-only change\n")
        t0 = time.monotonic()
        freeze_bundle(FreezeRequest(**kw))
        updated = time.monotonic() - t0
    finally:
        changed.write_bytes(original)
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"platform": platform, "flavor": flavor, "set": model_set, "bundle_bytes": size,
                      "cold_s": round(cold, 1), "update_s": round(updated, 1)}))
    print(f"app-only update / cold freeze: {updated / cold:.3f} (target <= 0.10)")


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
    p = sub.add_parser("update")
    p.add_argument("--platform", default="linux-cuda")
    p.add_argument("--flavor", default="full", choices=("full", "lite"))
    p.add_argument("--set", dest="model_set", default="demo")
    p.add_argument("--keep", action="store_true", help="keep build/bench-update/ (the bundles) afterwards")
    a = ap.parse_args()
    if a.cmd == "sizes":
        sizes(a.bundles, a.compressed)
    elif a.cmd == "ttfe":
        ttfe(a.bundle, a.exe, a.entry, a.runs, a.args)
    elif a.cmd == "update":
        update(a.platform, a.flavor, a.model_set, a.keep)
    else:
        rebuild(a.flavor)


if __name__ == "__main__":
    main()
