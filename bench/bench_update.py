"""Updater figures on real lite bundles (not a test): prints bytes and seconds.

    python bench/bench_update.py [--packs [--pack-limit SIZE]] [--keep-dir DIR]   # with mlfreeze's Python

Freezes a tiny stdlib app at 0.0.1 and 0.0.2 (only its code differs: an app-only update),
publishes both with signed TUF metadata into a directory served on 127.0.0.1, then through
``python -m mlfreeze_runtime.update`` (as ``<app>-update`` runs): install 0.0.1, update to
0.0.2, rollback. Prints the bytes the update downloaded against the whole bundle, the time
from download done to switch (audit + acceptance check + rename + switch), and the rollback
time (in the updater's own clock, and the whole command with interpreter start-up).
``--packs`` publishes packs (``mlfreeze publish --packs``) instead of loose blobs; the server
answers single byte ranges (``bytes=a-b``) as S3 or GitHub's release CDN do, and the figures
include the updater's HTTP request count.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from mlfreeze import hostinfo  # noqa: E402
from mlfreeze.bundle.freeze import AppConfig, FreezeRequest, freeze_bundle  # noqa: E402
from mlfreeze.platforms.profiles import all_profiles  # noqa: E402
from mlfreeze.release import publish  # noqa: E402
from mlfreeze_runtime import record  # noqa: E402

APP = 'import json, sys\nif "--health" in sys.argv:\n    print(json.dumps({"app": "tiny", "version": "V", ' \
      '"ml_available": False}))\n'


class _Quiet(SimpleHTTPRequestHandler):
    """The standard library's static server plus single byte ranges (``bytes=a-b``, ``bytes=a-``)."""

    def log_message(self, *args: object) -> None:
        pass

    def send_head(self):  # type: ignore[no-untyped-def]  # noqa: ANN201
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if not m:
            return super().send_head()
        try:
            f = open(self.translate_path(self.path), "rb")  # noqa: SIM115 (returned data is a copy)
        except OSError:
            self.send_error(404)
            return None
        with f:
            size = os.fstat(f.fileno()).st_size
            first = int(m.group(1))
            last = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            if first >= size:
                self.send_error(416)
                return None
            f.seek(first)
            data = f.read(last - first + 1)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return io.BytesIO(data)


def freeze(work: Path, version: str) -> Path:
    host = hostinfo.current()
    profile = next(p for p in all_profiles().values()
                   if (p.host_os, p.host_arch, p.accelerator) == (host.os, host.arch, "cpu"))
    proj = work / f"proj-{version}"
    proj.mkdir()
    (proj / "tiny.py").write_text(APP.replace('"V"', json.dumps(version)))
    app = AppConfig(app="tiny", entry=proj / "tiny.py", version=version, model_set="demo",
                    sources=(proj / "tiny.py",), pathex=(proj,))
    return freeze_bundle(FreezeRequest(profile=profile, flavor="lite", root=proj, app=app, dist_dir=work / "dist",
                                       work_dir=proj / "build"))


def updater(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mlfreeze_runtime.update", *args], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done, time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep-dir", type=Path, default=None)
    ap.add_argument("--packs", action="store_true", help="publish packs instead of loose blobs")
    ap.add_argument("--pack-limit", default=None, metavar="SIZE", help="with --packs (default: just under 2 GiB)")
    args = ap.parse_args()
    from mlfreeze.release import packs

    transport = {"packs": args.packs, "pack_limit": packs.parse_limit(args.pack_limit)}
    work = Path(tempfile.mkdtemp(prefix="bench-update-", dir=args.keep_dir))
    try:
        bundles = [freeze(work, v) for v in ("0.0.1", "0.0.2")]
        publish.generate_keys(work / "keys")
        signers = publish.load_signers(work / "keys", env={})
        repo = work / "repo"
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(repo)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        sde = int(time.time()) - 60
        publish.publish([bundles[0]], repo, signers, source_date_epoch=sde, **transport)
        root = work / "root"
        done, t_install = updater("install", "--from", url, "--root", str(root), "--trust",
                                  str(repo / "metadata" / "1.root.json"))
        first = json.loads(done.stdout.strip().splitlines()[-1])
        publish.publish([bundles[1]], repo, signers, source_date_epoch=sde, **transport)
        done, t_update = updater("update", "--root", str(root))
        second = json.loads(done.stdout.strip().splitlines()[-1])
        rb, t_rb_cmd = updater("rollback", "--root", str(root))
        full = sum(p.stat().st_size for p in bundles[1].rglob("*") if p.is_file())
        print(f"bundle (0.0.2, lite): {full / 1e6:.1f} MB, {second['reused_files'] + second['fetched_files']} files")
        layout = sorted(p.name for p in (repo / "packs").iterdir()) if args.packs else ["loose blobs"]
        sizes = [f"{(repo / 'packs' / n).stat().st_size / 1e6:.2f} MB" for n in layout] if args.packs else []
        print(f"transport: {'packs ' + ', '.join(sizes) if args.packs else 'loose blobs'}")
        print(f"install 0.0.1: downloaded {first['downloaded_bytes'] / 1e6:.1f} MB in {first['requests']} HTTP "
              f"requests, {t_install:.2f} s (command)")
        print(f"update 0.0.1 -> 0.0.2 (app code only): downloaded {second['downloaded_bytes'] / 1e3:.1f} kB = "
              f"{100 * second['downloaded_bytes'] / full:.2f} % of the bundle in {second['requests']} HTTP requests; "
              f"{second['fetched_files']} files fetched, {second['reused_files']} hard-linked; {t_update:.2f} s "
              "(command)")
        r1, r2 = (record.read(b) for b in bundles)
        changed = [f"{rel} ({e.size / 1e3:.0f} kB)" for rel, e in sorted(r2.items())
                   if rel not in r1 or r1[rel].sha256 != e.sha256]
        print(f"files that differ between the two freezes: {', '.join(changed)} (+ RECORD, BUILD-INFO.json)")
        print(f"download done -> switch (full audit + --health + rename + switch): "
              f"{second['seconds']['download_to_switch']:.2f} s")
        print(f"rollback: {rb.stdout.strip()} ; whole command {t_rb_cmd:.2f} s")
        server.shutdown()
    finally:
        if args.keep_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
