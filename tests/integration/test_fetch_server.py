"""A real threaded HTTP server on 127.0.0.1 with per-request fault injection (used by test_fetch_*).

``FaultServer.add(path, body)`` serves ``body`` (Range-aware); ``plan(path, *faults)`` queues
behaviours consumed one per request, then the path is served normally. Every request is
logged with its Range header and the bytes sent, so tests can assert what went over the wire.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

Fault = Callable[["_Handler", bytes], None]


@dataclass
class Request:
    path: str
    range: str | None
    status: int = 0
    sent: int = 0


class FaultServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[Fault]] = {}
        self.log: list[Request] = []
        self.release = threading.Event()  # ends stalls
        self.rate: float | None = None  # bytes/s throttle for normal serving
        self.lock = threading.Lock()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fault_server = self  # type: ignore[attr-defined]
        self.httpd = server
        self.port = server.server_address[1]
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def start(self) -> FaultServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return self.url(path)

    def plan(self, path: str, *faults: Fault) -> None:
        self.faults.setdefault(path, []).extend(faults)

    def requests_for(self, path: str) -> list[Request]:
        return [r for r in self.log if r.path == path]

    def sent_for(self, path: str) -> int:
        return sum(r.sent for r in self.requests_for(path))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    @property
    def fs(self) -> FaultServer:
        return self.server.fault_server  # type: ignore[attr-defined,no-any-return]

    def do_GET(self) -> None:  # noqa: N802
        fs = self.fs
        self.record = Request(path=self.path, range=self.headers.get("Range"))
        with fs.lock:
            fs.log.append(self.record)
            queue = fs.faults.get(self.path) or []
            fault = queue.pop(0) if queue else None
        body = fs.files.get(self.path)
        if body is None and fault is None:
            return self.status(404)
        if fault is not None:
            fault(self, body or b"")
        else:
            serve(self, body or b"")

    # ---- building blocks ----
    def status(self, code: int, headers: dict[str, str] | None = None) -> None:
        self.record.status = code
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def head(self, code: int, length: int, extra: dict[str, str] | None = None) -> None:
        self.record.status = code
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def write(self, data: bytes) -> None:
        step = 64 * 1024
        rate = self.fs.rate
        for i in range(0, len(data), step):
            piece = data[i:i + step]
            self.wfile.write(piece)
            self.record.sent += len(piece)
            if rate:
                time.sleep(len(piece) / rate)

    def reset(self) -> None:
        """Drop the connection with a TCP RST."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True


def _range_start(h: _Handler, size: int) -> int | None:
    value = h.headers.get("Range")
    if not value or not value.startswith("bytes=") or not value.endswith("-"):
        return None
    start = int(value[len("bytes="):-1])
    return start if start < size else None


def serve(h: _Handler, body: bytes) -> None:
    """Normal serving: 206 with a correct Content-Range for ``Range: bytes=N-``, else 200."""
    start = _range_start(h, len(body))
    if start is not None and start > 0:
        h.head(206, len(body) - start, {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
        h.write(body[start:])
    else:
        h.head(200, len(body))
        h.write(body)


# ---- faults ----
def drop_after(n: int) -> Fault:
    """Announce the whole body, send ``n`` bytes, reset the connection."""
    def fault(h: _Handler, body: bytes) -> None:
        start = _range_start(h, len(body)) or 0
        if start:
            h.head(206, len(body) - start, {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
        else:
            h.head(200, len(body))
        h.write(body[start:start + n])
        h.reset()
    return fault


def short_body(n: int) -> Fault:
    """Content-Length of the whole body, only ``n`` bytes, then a clean close."""
    def fault(h: _Handler, body: bytes) -> None:
        h.head(200, len(body))
        h.write(body[:n])
        h.wfile.flush()
        h.connection.shutdown(socket.SHUT_WR)
    return fault


def status(code: int, headers: dict[str, str] | None = None) -> Fault:
    def fault(h: _Handler, body: bytes) -> None:
        h.status(code, headers)
    return fault


def ignore_range(h: _Handler, body: bytes) -> None:
    h.head(200, len(body))
    h.write(body)


def wrong_bytes(h: _Handler, body: bytes) -> None:
    bad = bytes(b ^ 0xFF for b in body[:16]) + body[16:]
    h.head(200, len(bad))
    h.write(bad)


def wrong_content_range(h: _Handler, body: bytes) -> None:
    """A 206 that does not continue where the client asked (it starts at byte 0)."""
    h.head(206, len(body), {"Content-Range": f"bytes 0-{len(body) - 1}/{len(body)}"})
    h.write(body)


def redirect(location: str) -> Fault:
    def fault(h: _Handler, body: bytes) -> None:
        h.status(302, {"Location": location})
    return fault


def stall_after(n: int, seconds: float = 30.0) -> Fault:
    """Send ``n`` bytes of the body, then go silent (until the server stops or ``seconds``)."""
    def fault(h: _Handler, body: bytes) -> None:
        start = _range_start(h, len(body)) or 0
        if start:
            h.head(206, len(body) - start, {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
        else:
            h.head(200, len(body))
        h.write(body[start:start + n])
        h.wfile.flush()
        h.fs.release.wait(seconds)
        h.close_connection = True
    return fault


def serving() -> Iterator[FaultServer]:
    """Body of the ``server`` fixture each test module defines: ``yield from serving()``."""
    fs = FaultServer().start()
    try:
        yield fs
    finally:
        fs.stop()


@pytest.fixture
def server() -> Iterator[FaultServer]:
    yield from serving()


def write_manifest(path: Path, artifacts: list[dict[str, object]], model_id: str = "m",
                   set_name: str = "t") -> Path:
    """A one-model manifest (kind insightface) holding ``artifacts``."""
    lines = [f'[sets]\n{set_name} = ["{model_id}"]\n', f'[models.{model_id}]\nkind = "insightface"\n'
             'embed_dim = 4\nlicense = "test"\n']
    for art in artifacts:
        lines.append(f"[[models.{model_id}.artifacts]]")
        members = art.get("members")
        for k, v in art.items():
            if k == "members":
                continue
            lines.append(f"{k} = {_toml(v)}")
        if members:
            lines.append(f"[models.{model_id}.artifacts.members]")
            for name, spec in members.items():  # type: ignore[attr-defined]
                inner = ", ".join(f"{k} = {_toml(v)}" for k, v in spec.items())
                lines.append(f'"{name}" = {{ {inner} }}')
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    raise TypeError(v)


# ---- the server itself behaves as the tests assume ----
def test_server_serves_ranges(server: FaultServer) -> None:
    import urllib.request

    url = server.add("/x", b"0123456789")
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=4-"})) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == "bytes 4-9/10"
        assert r.read() == b"456789"
    assert [q.range for q in server.log] == ["bytes=4-"]


def test_server_short_body_is_short(server: FaultServer) -> None:
    import http.client
    import urllib.request

    url = server.add("/x", b"a" * 1000)
    server.plan("/x", short_body(10))
    with pytest.raises(http.client.IncompleteRead), urllib.request.urlopen(url) as r:
        r.read()
