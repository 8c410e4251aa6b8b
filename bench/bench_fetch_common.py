"""Helpers shared by bench_fetch_*.py: a random file, the benchmark server as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
