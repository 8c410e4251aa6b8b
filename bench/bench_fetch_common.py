"""Helpers shared by bench_fetch_*.py: a scratch directory, a random file, the benchmark
server as a process, and all three at once (``served_random_file``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes; return their sha256."""
    import hashlib

    h = hashlib.sha256()
    block = 1 << 24
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(block, left))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


@contextmanager
def bench_server(root: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, log file) of the sendfile server serving ``root`` in its own process."""
    port_file, log = root / ".port", root / ".log"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(HERE / "bench_fetch_server.py"), str(root), str(port_file),
                             str(log)])
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("benchmark server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}", log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def workdir() -> Iterator[Path]:
    """A scratch directory under /tmp, deleted afterwards."""
    work = Path(tempfile.mkdtemp(prefix="mlfreeze-bench-", dir="/tmp"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class Served:
    work: Path  # scratch directory (deleted afterwards)
    sha: str  # sha256 of a.bin
    base: str  # base URL; a.bin is at f"{base}/a.bin"
    log: Path  # the server's request log


@contextmanager
def served_random_file(size: int) -> Iterator[Served]:
    """``size`` random bytes as ``a.bin`` behind the benchmark server, in a scratch directory."""
    with workdir() as work:
        src = work / "src"
        src.mkdir()
        sha = random_file(src / "a.bin", size)
        with bench_server(src) as (base, log):
            yield Served(work=work, sha=sha, base=base, log=log)
