"""The runtime's HTTP chokepoint against a real loopback server: resume after a cut, retry a 503,
refuse wrong bytes, give up after its bounded retries."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlfreeze_runtime.update import http
from mlfreeze_runtime.update.errors import FetchError

DATA = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(DATA).hexdigest()


class Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []
    cut_once: set[str] = set()
    fail_once: set[str] = set()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        rng = self.headers.get("Range")
        self.seen.append((self.path, rng))
        if self.path == "/always-503" or self.path in self.fail_once:
            self.fail_once.discard(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        body = DATA[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.cut_once:
            self.cut_once.discard(self.path)
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    Handler.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


FAST = http.Policy(read_timeout=5, retries=2, backoff=0.01, backoff_max=0.05)


def test_a_cut_download_resumes_with_a_range_request(server: str, tmp_path: Path) -> None:
    Handler.cut_once = {"/cut"}
    dest = http.fetch_file(f"{server}/cut", tmp_path / "blob", sha256=SHA, size=len(DATA), policy=FAST)
    assert dest.read_bytes() == DATA and not (tmp_path / "blob.part").exists()
    ranges = [r for p, r in Handler.seen if p == "/cut"]
    assert ranges[0] is None and ranges[1] is not None and int(ranges[1][6:-1]) > 0


def test_a_503_is_retried_and_a_permanent_one_gives_up(server: str, tmp_path: Path) -> None:
    Handler.fail_once = {"/flaky"}
    http.fetch_file(f"{server}/flaky", tmp_path / "a", sha256=SHA, size=len(DATA), policy=FAST)
    with pytest.raises(FetchError, match="after 3 attempts"):
        http.fetch_file(f"{server}/always-503", tmp_path / "b", sha256=SHA, size=len(DATA), policy=FAST)
    assert sum(1 for p, _ in Handler.seen if p == "/always-503") == 3


def test_bytes_that_are_not_the_signed_ones_are_refused(server: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="damaged or tampered"):
        http.fetch_file(f"{server}/x", tmp_path / "c", sha256="0" * 64, size=len(DATA), policy=FAST)
    assert not (tmp_path / "c").exists() and not (tmp_path / "c.part").exists()
