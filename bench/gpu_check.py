"""The prepared GPU check: what a CPU host cannot prove, run where there is a GPU.

    # (a) a user's GPU machine, on a built full bundle (from a checkout with mlfreeze + PyInstaller):
    python bench/gpu_check.py --bundle dist/photo_search-0.1.0-linux-cuda-full [--out DIR]
    # (b) a lent GPU machine with its own Python and torch (no network), from a checkout:
    python bench/gpu_check.py --lent [--out DIR]

Both write ``gpu-check.json`` (shape below) into ``--out`` (default ``$OUT``, else
dist/reports/) and print one line per check; exit 0 when every check passed, 1 when one
failed, 2 on bad usage. ``--device cpu`` runs the same path without a GPU (the tests do).

(a) ``--bundle``: the frozen self-test with ``DEVICE=cuda`` (``<app>-selftest --json``); the
app's own probe (``<app> --mlfreeze-probe``) on the CPU and on CUDA, compared by cosine, and
its text throughput; then, inside the bundle (its PYZ, its ``_internal/`` extension modules and
shared libraries, ``LD_LIBRARY_PATH=_internal`` as the bootloader sets; bench/gpu_probe.py), a
cuDNN convolution, an NVRTC compile, an onnxruntime session on CUDA, the demo CLIP's CPU-vs-CUDA
embeddings and throughput, and the shared libraries that process mapped.
(b) ``--lent``: the build-time gate (``python -m mlfreeze verify --set demo``) on the device,
and the same probes with the machine's own torch and the runtime package from this checkout.

gpu-check.json (schema "mlfreeze.gpu-check/1")::

    {"schema": "mlfreeze.gpu-check/1", "mode": "bundle"|"lent", "device": "cuda",
     "ok": true,
     "checks": [{"name": "selftest"|"app_probe"|"torch"|"cudnn_conv"|"nvrtc_compile"|
                 "onnxruntime"|"clip_embeddings"|"verify_gate", "ok": bool, "detail": str,
                 "seconds": float, ...check-specific figures}],
     "throughput": {"images_per_s": float|null, "texts_per_s": float|null, "app_texts_per_s": float|null},
     "mapped_libraries": [{"path": "/abs/path/libcublas.so.13",
                           "internal_path": "nvidia/cu13/lib/libcublas.so.13" | null,
                           "bytes": 123456}]}

``internal_path`` is relative to the bundle's ``_internal/`` (mode a) or to the site-packages
directory the library came from (mode b; the same layout PyInstaller keeps), null for a
library from the host (glibc, the driver); prune rules' globs and the size report's paths use
the same base, so a library that never appears here on a GPU run is a prune candidate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SCHEMA = "mlfreeze.gpu-check/1"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROBE = HERE / "gpu_probe.py"
_LIB = re.compile(r"\.so(\.\d+)*$|\.dylib$|\.dll$|\.pyd$")


def parse_maps(text: str) -> list[dict[str, Any]]:
    """Shared libraries in /proc/<pid>/maps text: one entry per file, bytes mapped summed, sorted by path."""
    sizes: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        path = parts[5].strip()
        if path.endswith(" (deleted)"):
            path = path[: -len(" (deleted)")]
        if not path.startswith("/") or not _LIB.search(path):
            continue
        start, _, end = parts[0].partition("-")
        try:
            sizes[path] = sizes.get(path, 0) + int(end, 16) - int(start, 16)
        except ValueError:
            continue
    return [{"path": p, "bytes": n} for p, n in sorted(sizes.items())]


def mapped_libraries(maps_text: str, bases: Sequence[Path]) -> list[dict[str, Any]]:
    """parse_maps() with ``internal_path``: relative to the first of ``bases`` that holds the file.

    Paths are compared as the process saw them and resolved (a venv reached through a link)."""
    out = []
    resolved = [b.resolve() for b in bases]
    for entry in parse_maps(maps_text):
        path = Path(entry["path"])
        rel = None
        for base in resolved:
            for candidate in (path, path.resolve()):
                try:
                    rel = candidate.relative_to(base).as_posix()
                    break
                except ValueError:
                    continue
            if rel is not None:
                break
        out.append({"path": entry["path"], "internal_path": rel, "bytes": entry["bytes"]})
    return out


def cosine_min(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float:
    """The smallest cosine between paired rows of ``a`` and ``b`` (same shape)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"cannot compare {len(a)} embeddings with {len(b)}")
    worst = 1.0
    for x, y in zip(a, b, strict=True):
        dot = sum(p * q for p, q in zip(x, y, strict=True))
        nx, ny = sum(p * p for p in x) ** 0.5, sum(q * q for q in y) ** 0.5
        worst = min(worst, dot / (nx * ny) if nx and ny else 0.0)
    return worst


def make_report(*, mode: str, device: str, checks: Sequence[Mapping[str, Any]], libraries: Sequence[Mapping[str, Any]],
                app_texts_per_s: float | None = None) -> dict[str, Any]:
    """The gpu-check.json document from the checks' results (shape in the module docstring)."""
    clip = next((c for c in checks if c.get("name") == "clip_embeddings"), {})
    return {"schema": SCHEMA, "mode": mode, "device": device, "ok": bool(checks) and all(c["ok"] for c in checks),
            "checks": [dict(c) for c in checks],
            "throughput": {"images_per_s": clip.get("images_per_s"), "texts_per_s": clip.get("texts_per_s"),
                           "app_texts_per_s": app_texts_per_s},
            "mapped_libraries": [dict(x) for x in libraries]}


def render(report: Mapping[str, Any]) -> str:
    lines = [f"gpu-check ({report['mode']}, {report['device']}): {'ok' if report['ok'] else 'FAILED'}"]
    for c in report["checks"]:
        lines.append(f"  {'ok  ' if c['ok'] else 'FAIL'} {c['name']:<16} {c.get('detail', '')}")
    t = report["throughput"]
    lines.append(f"  throughput: images/s {t['images_per_s']}, texts/s {t['texts_per_s']}, "
                 f"app texts/s {t['app_texts_per_s']}")
    inside = [x for x in report["mapped_libraries"] if x["internal_path"]]
    lines.append(f"  mapped libraries: {len(report['mapped_libraries'])} ({len(inside)} shipped), "
                 f"{sum(x['bytes'] for x in inside) / 1e6:.0f} MB mapped from the shipped ones")
    return "\n".join(lines)


def _check(name: str, ok: bool, detail: str, started: float, **extra: Any) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail, "seconds": round(time.monotonic() - started, 3), **extra}


def _run(cmd: Sequence[str | Path], *, env: Mapping[str, str] | None = None,
         timeout: float = 600) -> tuple[int, str, str]:
    # bench/ is outside the builder: it runs its own subprocesses (the builder's chokepoint is src/mlfreeze/_proc.py)
    done = subprocess.run([str(c) for c in cmd], env=dict(env) if env is not None else None, capture_output=True,
                          text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def run_probe(args: Sequence[str], *, env: Mapping[str, str], python: str = sys.executable,
              isolated: bool = False) -> tuple[list[dict[str, Any]], str, list[str]]:
    """bench/gpu_probe.py in a child process: its probe results, /proc/self/maps text and sys.path dirs."""
    started = time.monotonic()
    cmd = [python, *(["-I", "-S"] if isolated else []), str(PROBE), *args]
    rc, out, err = _run(cmd, env=env)
    try:
        data = json.loads(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return [_check("probe", False, f"the probe process exited {rc}: {_last_line(err) or _last_line(out)}",
                       started)], "", []
    return data["probes"], data.get("maps", ""), data.get("sys_path", [])


# ---------------------------------------------------------------------------- mode (a)

def find_pyz(executable: Path) -> str:
    """``EXE?OFFSET`` of the PYZ archive embedded in a PyInstaller executable (PyInstaller's reader)."""
    from PyInstaller.archive.readers import PKG_ITEM_PYZ, CArchiveReader

    reader = CArchiveReader(str(executable))
    for entry in reader.toc.values():
        if entry[4] == PKG_ITEM_PYZ:
            return f"{executable}?{reader._start_offset + entry[0]}"
    raise UsageFailure(f"{executable} holds no PYZ archive; is it a PyInstaller executable?")


class UsageFailure(Exception):
    """Bad input: one line, exit 2."""


def _app_names(bundle: Path) -> tuple[Path, Path]:
    selftests = sorted(bundle.glob("*-selftest"))
    if not selftests:
        raise UsageFailure(f"{bundle} has no <app>-selftest: pass a full bundle")
    selftest = selftests[0]
    return bundle / selftest.name[: -len("-selftest")], selftest


def _models(bundle: Path) -> dict[str, Any]:
    try:
        return json.loads((bundle / "models" / "models.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _clip_files(models_dir: Path, index: Mapping[str, Any]) -> list[str]:
    for model in index.get("models", []):
        if model.get("kind") == "clip":
            files = model.get("files", {})
            base = models_dir / model["id"]
            weights = next((n for n in files if n.endswith(".safetensors")), None)
            config = next((n for n in files if n.endswith(".json")), None)
            if weights and config:
                return ["--clip-weights", str(base / weights), "--clip-config", str(base / config)]
    return []


def app_probe(app: Path, device: str, texts: Sequence[str], env: Mapping[str, str]) -> tuple[list[Any], float]:
    with tempfile.TemporaryDirectory(prefix="mlfreeze-gpu-") as tmp:
        request = Path(tmp) / "request.json"
        request.write_text(json.dumps({"texts": list(texts), "images": [], "faces": []}), encoding="utf-8")
        started = time.monotonic()
        rc, out, err = _run([app, "--mlfreeze-probe", request], env={**env, "DEVICE": device})
        seconds = time.monotonic() - started
    if rc != 0:
        raise RuntimeError(f"{app.name} --mlfreeze-probe exited {rc}: {_last_line(err)}")
    return json.loads(out)["text"], seconds


def check_bundle(bundle: Path, device: str, batch: int) -> dict[str, Any]:
    app, selftest = _app_names(bundle)
    internal = bundle / "_internal"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LD_LIBRARY_PATH"))}
    checks: list[dict[str, Any]] = []

    started = time.monotonic()
    rc, out, err = _run([selftest, "--json", "--device", device], env={**env, "DEVICE": device})
    summary = ""
    with contextlib.suppress(ValueError, AttributeError):
        summary = str(json.loads(out).get("summary", "")) if out.strip() else ""
    checks.append(_check("selftest", rc == 0, f"{selftest.name} --json on {device}: exit {rc} "
                         f"{summary or _last_line(err)}".strip(), started))

    started = time.monotonic()
    app_rate = None
    texts = [f"a photo of object number {i}" for i in range(batch)]
    try:
        cpu, _ = app_probe(app, "cpu", texts, env)
        dev, t_many = app_probe(app, device, texts, env)
        _, t_one = app_probe(app, device, texts[:1], env)
        cos = cosine_min(cpu, dev)
        app_rate = round((batch - 1) / (t_many - t_one), 1) if t_many > t_one else None
        checks.append(_check("app_probe", cos >= 0.999, f"{app.name} --mlfreeze-probe: min cosine cpu vs {device} "
                             f"= {cos:.6f}", started, min_cosine_cpu_vs_device=round(cos, 6)))
    except (RuntimeError, ValueError, KeyError) as exc:
        checks.append(_check("app_probe", False, str(exc), started))

    import PyInstaller.loader.pyimod01_archive as archive

    args = ["--device", device, "--internal", str(internal), "--pyz", find_pyz(selftest),
            "--pyz-reader", archive.__file__, "--batch", str(batch),
            *_clip_files(bundle / "models", _models(bundle))]
    probe_env = {**env, "LD_LIBRARY_PATH": str(internal)}
    probes, maps, _ = run_probe(args, env=probe_env, python=sys.executable, isolated=True)
    checks += probes
    return make_report(mode="bundle", device=device, checks=checks,
                       libraries=mapped_libraries(maps, [internal]), app_texts_per_s=app_rate)


# ---------------------------------------------------------------------------- mode (b)

def check_lent(device: str, batch: int, out_dir: Path) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    started = time.monotonic()
    report = out_dir / f"verify-demo-{device.replace(':', '-')}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rc, out, err = _run([sys.executable, "-m", "mlfreeze", "verify", "--set", "demo", "--device", device,
                         "--report", report], env=env)
    checks.append(_check("verify_gate", rc == 0, f"mlfreeze verify --set demo --device {device}: exit {rc} "
                         f"{_last_line(out) if rc == 0 else _last_line(err) or _last_line(out)}".strip(), started))
    demo = ROOT / "src" / "mlfreeze" / "specs" / "demo"
    args = ["--device", device, "--batch", str(batch), "--clip-weights", str(demo / "demo_clip.safetensors"),
            "--clip-config", str(demo / "demo_clip_config.json")]
    probes, maps, paths = run_probe(args, env=env)
    checks += probes
    # the most specific import directory wins (site-packages before a parent directory on sys.path)
    bases = sorted((Path(p) for p in paths), key=lambda p: len(p.resolve().parts), reverse=True)
    return make_report(mode="lent", device=device, checks=checks, libraries=mapped_libraries(maps, bases))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check", description="The prepared GPU check (bench/gpu_check.py).")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--bundle", type=Path, metavar="DIR", help="a built full bundle (a user's GPU machine)")
    mode.add_argument("--lent", action="store_true", help="this machine's own torch, the demo models (lent GPU)")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    ap.add_argument("--batch", type=int, default=16, help="inputs per throughput batch (default 16)")
    ap.add_argument("--out", type=Path, default=None,
                    help="where gpu-check.json goes (default $OUT, else dist/reports)")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):
        ap.error(f"--device {args.device!r}: expected cpu, cuda or cuda:N")
    if args.batch < 2:
        ap.error("--batch must be at least 2")
    out_dir = args.out or Path(os.environ.get("OUT") or ROOT / "dist" / "reports")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if args.bundle is not None:
            if not (args.bundle / "_internal").is_dir():
                raise UsageFailure(f"--bundle {args.bundle}: not a onedir bundle (no _internal/)")
            report = check_bundle(args.bundle.resolve(), args.device, args.batch)
        else:
            report = check_lent(args.device, args.batch, out_dir)
    except UsageFailure as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    (out_dir / "gpu-check.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(render(report))
    print(f"gpu-check: wrote {out_dir / 'gpu-check.json'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
