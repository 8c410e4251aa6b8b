"""Benchmark: the size report of a ~5 GB bundle (target: <= 10 s on the 2-core build machine).

    PYTHONPATH=$PWD /work/venv-ml/bin/python bench/bench_sizes.py [--gb 5] [--keep]
    PYTHONPATH=$PWD /work/venv-ml/bin/python bench/bench_sizes.py --accuracy DIR

The bundle is real bytes, not sparse files: library-like files are windows into a pool read
from real shared libraries (torch, onnxruntime, ... from the running interpreter's
site-packages, so they deflate like libraries do), models are random bytes, and there are
a few thousand files, groups of same-size files and some true duplicates. It is built in
/tmp and deleted afterwards. Two timings: warm (just written, in the page cache) and cold
(every file's pages dropped with posix_fadvise(DONTNEED), which touches only these files).

``--accuracy DIR`` compares the sampled compressed estimate with exact deflate (the release's level) of
every byte under DIR (slow: ~5 MB/s per core).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import site
import sys
import tempfile
import time
from pathlib import Path

from mlfreeze.sizes.compress import compressed_sizes
from mlfreeze.sizes.report import build_report, write_outputs
from mlfreeze.sizes.scan import scan

MB = 1_000_000


def pool_bytes(size: int) -> bytes:
    libs = []
    for sp in site.getsitepackages():
        for sub in ("torch/lib", "onnxruntime/capi", "cv2", "scipy.libs", "numpy.libs", "faiss"):
            libs += sorted(p for p in (Path(sp) / sub).glob("*.so*") if p.stat().st_size > MB)
    out = bytearray()
    for lib in libs:
        out += lib.read_bytes()[: size - len(out)]
        if len(out) >= size:
            break
    if len(out) < size:  # no ML stack: compressible text-like bytes
        rnd = random.Random(0)
        while len(out) < size:
            alphabet = b"\x00\x00\x00ABCDEFGHijklmnop\xff\x48\x89"
            out += bytes(rnd.choice(alphabet) for _ in range(4096)) + rnd.randbytes(1024)
    return bytes(out[:size])


def make_bundle(root: Path, total_gb: float) -> tuple[Path, int, int]:
    rnd = random.Random(42)
    pool = pool_bytes(256 * MB)
    bundle = root / "photo-search-0.1.0-linux-cuda-full"
    scale = total_gb / 5
    files: list[tuple[str, int]] = []
    families = ["cudnn", "cublas", "cusparse", "nccl", "cufft", "curand", "cusolver", "cuda_runtime", "nvjitlink"]
    for i in range(int(20 * scale)):
        files.append((f"_internal/nvidia/{families[i % len(families)]}/lib/lib{i}.so", rnd.randint(60, 140) * MB))
    for i in range(int(400 * scale)):
        top = rnd.choice(["torch/lib", "onnxruntime/capi", "cv2", "scipy/linalg", "triton/_C", "numpy/core"])
        files.append((f"_internal/{top}/mod{i}.so", rnd.randint(1 * MB, 7 * MB)))
    for i in range(int(2500 * scale)):
        top = rnd.choice(["torch", "torchvision", "scipy", "numpy", "cv2", "faiss", "PIL", "triton"])
        size = 4096 if i % 10 == 0 else rnd.randint(1_000, 200_000)  # 250 same-size non-duplicates
        files.append((f"_internal/{top}/pkg{i % 50}/file{i}.py", size))
    written = 0
    for rel, size in files:
        off = rnd.randrange(0, len(pool) - min(size, len(pool)))
        data = pool[off:off + size] if size <= len(pool) else (pool * (size // len(pool) + 1))[off:off + size]
        path = bundle / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written += size
    models = bundle / "models" / "demo-clip"
    models.mkdir(parents=True)
    for name, size in (("open_clip_model.safetensors", int(600 * MB * scale)),
                       ("w600k_r50.onnx", int(170 * MB * scale))):
        with open(models / name, "wb") as f:
            for _ in range(size // (16 * MB)):
                f.write(os.urandom(16 * MB))
            f.write(os.urandom(size % (16 * MB)))
        written += size
    dups = 0
    mids = [r for r, s in files if "/mod" in r][: int(40 * scale)]
    for i, rel in enumerate(mids):
        shutil.copyfile(bundle / rel, bundle / f"_internal/torch/lib/copy{i}.so")
        dups += (bundle / rel).stat().st_size
    (bundle / "photo-search").write_bytes(pool[:30 * MB])
    (bundle / "BUILD-INFO.json").write_text('{"platform": "linux-cuda", "flavor": "full", "accelerator": "cuda",'
                                            ' "archive_format": "tar.gz", "app": "photo-search"}')
    return bundle, written + dups + 30 * MB, dups


def drop_cache(bundle: Path) -> None:
    os.sync()
    for dirpath, _, names in os.walk(bundle):
        for n in names:
            fd = os.open(os.path.join(dirpath, n), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def timed_report(bundle: Path, out: Path) -> tuple[float, dict]:
    t = time.perf_counter()
    report = build_report([bundle])
    write_outputs(report, json_path=out / "s.json", markdown=out / "s.md", html=out / "s.html")
    return time.perf_counter() - t, report.doc["bundles"][0]


def accuracy(directory: Path) -> None:
    inv = scan(directory, venv=False)
    names, sizes = [f.path for f in inv.files], [f.size for f in inv.files]
    t = time.perf_counter()
    est = compressed_sizes(inv.root, names, sizes, archive_format="tar.gz")
    t_est = time.perf_counter() - t
    t = time.perf_counter()
    exact = compressed_sizes(inv.root, names, sizes, archive_format="tar.gz", exact=True)
    t_exact = time.perf_counter() - t
    e, x = sum(est.sizes), sum(exact.sizes)
    print(f"accuracy on {directory}: {len(names)} files, {sum(sizes) / MB:.1f} MB on disk")
    print(f"  estimate {e / MB:.1f} MB in {t_est:.2f} s (read {est.read_bytes / MB:.1f} MB); "
          f"exact (level {exact.level}) {x / MB:.1f} MB in {t_exact:.1f} s; error {100 * (e - x) / x:+.2f}%")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=5.0)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--accuracy", type=Path, default=None)
    a = ap.parse_args()
    if a.accuracy:
        accuracy(a.accuracy)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-sizes-", dir="/tmp"))
    try:
        t = time.perf_counter()
        bundle, total, dups = make_bundle(tmp, a.gb)
        print(f"built {bundle} ({total / 1e9:.2f} GB, {dups / MB:.0f} MB duplicated) "
              f"in {time.perf_counter() - t:.0f} s")
        out = tmp / "reports"
        warm, doc = timed_report(bundle, out)
        drop_cache(bundle)
        cold, doc = timed_report(bundle, out)
        total = sum(os.lstat(os.path.join(d, n)).st_size for d, _, ns in os.walk(bundle) for n in ns)
        dup = sum(f["bytes"] for f in doc["waste"]["findings"] if f["rule"] == "duplicate")
        print(f"files {doc['files']}, disk {doc['disk_bytes'] / 1e9:.3f} GB (exact: {doc['disk_bytes'] == total}), "
              f"compressed ~{doc['compressed_bytes'] / 1e9:.3f} GB "
              f"(read {doc['compressed']['read_bytes'] / MB:.0f} MB), "
              f"duplicates found {dup / MB:.0f} MB (hashed {doc['waste']['hashed_bytes'] / MB:.0f} MB)")
        print(f"timings (cold): {doc['timings']}")
        print(f"report warm {warm:.2f} s, cold {cold:.2f} s (target <= 10 s) on {os.cpu_count()} cores")
        return 0 if cold <= 10 else 1
    finally:
        if not a.keep:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
