"""How fast and how small the reproducible release archives are, against plain GNU tar + gzip.

    PYTHONPATH=$PWD python bench/bench_release.py [--dir DIR] [--repeat N]

DIR defaults to the cv2 package of the running interpreter (real shared libraries, the kind
of bytes a bundle's _internal/ holds). Prints one row per writer: seconds (best of N),
MB/s of input, compressed/original ratio, and whether two runs gave the same sha256.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mlfreeze import _proc as proc
from mlfreeze.release import archives


def _default_dir() -> Path:
    spec = importlib.util.find_spec("cv2")
    if spec is None or not spec.origin:
        sys.exit("no --dir given and cv2 is not importable; pass --dir")
    return Path(spec.origin).parent


def _best(fn, repeat: int) -> tuple[float, str, int]:  # type: ignore[no-untyped-def]
    best, digests, size = float("inf"), set(), 0
    for _ in range(repeat):
        start = time.perf_counter()
        digest, size = fn()
        best = min(best, time.perf_counter() - start)
        digests.add(digest)
    return best, "yes" if len(digests) == 1 else "NO", size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    src = (args.dir or _default_dir()).resolve()
    total = sum(e.size for e in archives.walk(src, "b"))
    print(f"input: {src} ({total / 1e6:.1f} MB, {len(archives.walk(src, 'b'))} entries), best of {args.repeat}")
    print(f"{'writer':<28} {'seconds':>8} {'MB/s':>7} {'ratio':>6} {'same bytes':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)

        def ours(fmt: str, level: int):  # type: ignore[no-untyped-def]
            def run() -> tuple[str, int]:
                dest = out / f"x.{fmt}"
                if fmt == "tar.gz":
                    r = archives.write_tar_gz(src, dest, arcroot="b", mtime=archives.ZIP_EPOCH, level=level)
                else:
                    r = archives.write_zip(src, dest, arcroot="b", mtime=archives.ZIP_EPOCH, level=level)
                return r.sha256, r.size
            return run

        def gnu_tar() -> tuple[str, int]:
            dest = out / "gnu.tar.gz"
            proc.run(["tar", "-czf", str(dest), "-C", str(src.parent), src.name], echo=False)
            return archives.sha256_file(dest), dest.stat().st_size

        rows = [(f"mlfreeze tar.gz level {lv}", ours("tar.gz", lv)) for lv in (1, 6, 9)]
        rows += [(f"mlfreeze zip level {lv}", ours("zip", lv)) for lv in (1, 6)]
        if shutil.which("tar"):
            rows.append(("GNU tar -czf (gzip -6)", gnu_tar))
        for name, fn in rows:
            seconds, same, size = _best(fn, args.repeat)
            print(f"{name:<28} {seconds:8.2f} {total / 1e6 / seconds:7.1f} {size / total:6.3f} {same:>10}")
        big = out / "split.bin"
        with open(big, "wb") as f:
            f.truncate(512 * 1024**2)
        start = time.perf_counter()
        parts = archives.split_file(big, 200 * 1024**2)
        seconds = time.perf_counter() - start
        print(f"split 512 MiB into {len(parts)} parts (sha256 each): {seconds:.2f} s, {512 / seconds:.0f} MiB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
