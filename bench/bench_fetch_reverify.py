"""Re-verifying the cached default set before use, as a time ratio to ``sha256sum`` on the same
files (target <= 1.1).

    PYTHONPATH=. /work/venv-ml/bin/python bench/bench_fetch_reverify.py [--synthetic] [--rounds 3]

Uses the real default set when it is in the cache ($MLFREEZE_CACHE or the user cache dir);
otherwise (or with --synthetic) builds a synthetic set of the same shape in /tmp: a
605,143,284-byte weights file and a stored zip of five members with sizes close to
buffalo_l's, fetched through file:// URLs into a fresh cache, deleted afterwards.
What is timed: ``fetch_set(..., offline=True)``, which re-hashes every file it returns
(the CLIP blob and the five extracted members), against ``sha256sum`` of those same files.
Both run with the files in the page cache (one warm-up pass each).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

from bench_fetch_common import random_file, workdir

from mlfreeze.errors import DownloadError
from mlfreeze.models.fetch import fetch_set
from mlfreeze.models.manifest import Manifest, load_manifest

MEMBERS = {"det_10g.onnx": 16_923_827, "w600k_r50.onnx": 174_383_860, "1k3d68.onnx": 143_607_619,
           "2d106det.onnx": 5_030_888, "genderage.onnx": 1_322_532}
CLIP_SIZE = 605_143_284


def synthetic(work: Path) -> Manifest:
    src = work / "src"
    src.mkdir()
    clip_sha = random_file(src / "open_clip_model.safetensors", CLIP_SIZE)
    member_sha = {}
    with zipfile.ZipFile(src / "buffalo_l.zip", "w", zipfile.ZIP_STORED) as zf:
        for name, size in MEMBERS.items():
            data = os.urandom(size)
            member_sha[name] = hashlib.sha256(data).hexdigest()
            zf.writestr(name, data)
    zip_sha = hashlib.sha256((src / "buffalo_l.zip").read_bytes()).hexdigest()
    zip_size = (src / "buffalo_l.zip").stat().st_size
    members = "\n".join(f'"{n}" = {{ sha256 = "{s}", bundle = {str(n in ("det_10g.onnx", "w600k_r50.onnx")).lower()} }}'
                        for n, s in member_sha.items())
    text = f"""
[sets]
default = ["clip-vit-b-32-openai", "buffalo_l"]

[models.clip-vit-b-32-openai]
kind = "clip"
embed_dim = 512
license = "MIT"
arch = "ViT-B-32-quickgelu"

[[models.clip-vit-b-32-openai.artifacts]]
file = "open_clip_model.safetensors"
sha256 = "{clip_sha}"
size = {CLIP_SIZE}
urls = ["src/open_clip_model.safetensors"]

[models.buffalo_l]
kind = "insightface"
embed_dim = 512
license = "test"

[[models.buffalo_l.artifacts]]
file = "buffalo_l.zip"
sha256 = "{zip_sha}"
size = {zip_size}
urls = ["src/buffalo_l.zip"]
extract = true

[models.buffalo_l.artifacts.members]
{members}
"""
    (work / "models.toml").write_text(text)
    return load_manifest(work / "models.toml")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with workdir() as work:
        manifest, cache, kind = load_manifest(), None, "the real default set (cached)"
        quiet = contextlib.redirect_stderr(io.StringIO())
        try:
            if a.synthetic:
                raise DownloadError("synthetic requested")
            with quiet:
                fetch_set(manifest, "default", offline=True)
        except DownloadError:
            kind = "a synthetic set of the default set's shape (the default set is not cached here)"
            manifest, cache = synthetic(work), work / "cache"
            with quiet:
                fetch_set(manifest, "default", cache_dir=cache, progress=False)
        with contextlib.redirect_stderr(io.StringIO()):
            got = fetch_set(manifest, "default", cache_dir=cache, offline=True)
        files = [str(p) for fm in got.values() for p in fm.files.values()]
        total = sum(os.path.getsize(f) for f in files)
        subprocess.run(["sha256sum", *files], check=True, capture_output=True)  # warm-up
        ours, theirs, ossl = [], [], []
        has_openssl = shutil.which("openssl") is not None
        for _ in range(a.rounds):
            if has_openssl:  # a second reference: OpenSSL uses the CPU's SHA extensions, coreutils may not
                t = time.perf_counter()
                subprocess.run(["openssl", "dgst", "-sha256", *files], check=True, capture_output=True)
                ossl.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run(["sha256sum", *files], check=True, capture_output=True)
            theirs.append(time.perf_counter() - t)
            t = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):
                fetch_set(manifest, "default", cache_dir=cache, offline=True)
            ours.append(time.perf_counter() - t)
        print(f"{kind}: {len(files)} files, {total:,} bytes, {os.cpu_count()} CPUs")
        print(f"sha256sum          best {min(theirs):.2f}s (all: {', '.join(f'{x:.2f}' for x in theirs)})")
        print(f"mlfreeze re-verify best {min(ours):.2f}s (all: {', '.join(f'{x:.2f}' for x in ours)})")
        print(f"time ratio mlfreeze/sha256sum: {min(ours) / min(theirs):.2f} (target <= 1.1)")
        if ossl:
            print(f"openssl dgst       best {min(ossl):.2f}s; ratio mlfreeze/openssl: {min(ours) / min(ossl):.2f}")


if __name__ == "__main__":
    main()
