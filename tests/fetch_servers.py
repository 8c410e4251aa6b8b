"""Real threaded HTTP(S) servers on 127.0.0.1 with per-request fault injection: the fixtures
``server`` and ``tls_server`` of every fetch test, both tiers (registered in tests/conftest.py).

``FaultServer.add(path, body)`` serves ``body`` (Range-aware: ``bytes=N-`` and ``bytes=N-M``, with
an ETag and If-Range honoured; ``ranges = False`` makes it ignore Range as some servers do);
``add_tree(directory)`` serves a folder's files (a release repository); ``plan(path, *faults)``
queues behaviours consumed one per request, then the path is
served normally. Every request is logged with its Range/If-Range headers and the bytes sent, so
tests can assert what went over the wire. ``tls_server`` speaks HTTPS with a self-signed
certificate for 127.0.0.1 made with ``cryptography`` (``.cert_file`` is its PEM).
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import re
import socket
import ssl
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
    if_range: str | None = None
    status: int = 0
    sent: int = 0


class FaultServer:
    def __init__(self, tls_dir: Path | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[Fault]] = {}
        self.log: list[Request] = []
        self.release = threading.Event()  # ends stalls
        self.rate: float | None = None  # bytes/s throttle for normal serving
        self.ranges = True  # False: answer every request 200 with the whole body, as a server without Range
        self.lock = threading.Lock()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fault_server = self  # type: ignore[attr-defined]
        self.httpd = server
        self.port = server.server_address[1]
        self.scheme = "http"
        self.cert_file: Path | None = None
        if tls_dir is not None:
            self.cert_file, key = self_signed_cert(tls_dir)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cert_file, key)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def start(self) -> FaultServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return self.url(path)

    def add_tree(self, directory: Path, prefix: str = "/") -> str:
        """Serve every file under ``directory`` at ``prefix + its relative path`` (read now: call
        again after the folder changed); returns the base URL."""
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            self.files[prefix + path.relative_to(directory).as_posix()] = path.read_bytes()
        return self.url(prefix)

    def etag(self, path: str) -> str:
        """The strong ETag the server sends for ``path``'s current body."""
        return '"' + hashlib.sha256(self.files.get(path, b"")).hexdigest()[:16] + '"'

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
        self.record = Request(path=self.path, range=self.headers.get("Range"), if_range=self.headers.get("If-Range"))
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
        extra = dict(extra or {})
        self.send_header("Content-Type", extra.pop("Content-Type", "application/octet-stream"))
        if "Content-Length" not in extra:
            self.send_header("Content-Length", str(length))
        self.send_header("ETag", self.fs.etag(self.path))
        for k, v in extra.items():
            if v:
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
    if_range = h.headers.get("If-Range")
    if if_range is not None and if_range != h.fs.etag(h.path):
        return None  # RFC 9110: a changed representation is sent whole
    start = int(value[len("bytes="):-1])
    return start if start < size else None


def _closed_range(h: _Handler) -> tuple[int, int] | None:
    """(first, last) of ``Range: bytes=N-M`` (If-Range honoured as for ``bytes=N-``)."""
    m = re.match(r"^bytes=(\d+)-(\d+)$", h.headers.get("Range") or "")
    if not m or int(m.group(2)) < int(m.group(1)):
        return None
    if_range = h.headers.get("If-Range")
    if if_range is not None and if_range != h.fs.etag(h.path):
        return None
    return int(m.group(1)), int(m.group(2))


def serve(h: _Handler, body: bytes) -> None:
    """Normal serving: 206 with a correct Content-Range for ``Range: bytes=N-`` and ``bytes=N-M``
    (416 when N is past the end of a closed range), else 200; always 200 when ``ranges`` is off."""
    closed = _closed_range(h) if h.fs.ranges else None
    if closed is not None:
        first, last = closed[0], min(closed[1], len(body) - 1)
        if first >= len(body):
            return h.status(416, {"Content-Range": f"bytes */{len(body)}"})
        h.head(206, last - first + 1, {"Content-Range": f"bytes {first}-{last}/{len(body)}"})
        return h.write(body[first:last + 1])
    start = (_range_start(h, len(body)) if h.fs.ranges else None) or 0
    _head_from(h, body, start)
    h.write(body[start:])


def _head_from(h: _Handler, body: bytes, start: int) -> None:
    """206 with its Content-Range for a resume from ``start`` > 0, else 200 (the whole body)."""
    if start:
        h.head(206, len(body) - start, {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
    else:
        h.head(200, len(body))


# ---- faults ----
def drop_after(n: int) -> Fault:
    """Announce the whole body, send ``n`` bytes, reset the connection."""
    def fault(h: _Handler, body: bytes) -> None:
        start = _range_start(h, len(body)) or 0
        _head_from(h, body, start)
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
        _head_from(h, body, start)
        h.write(body[start:start + n])
        h.wfile.flush()
        h.fs.release.wait(seconds)
        h.close_connection = True
    return fault


def drip(rate: float = 1.0, headers_too: bool = False) -> Fault:
    """Announce the whole body, then send it one byte every ``1/rate`` seconds (until the server
    stops). ``headers_too``: the status line and headers trickle in the same way."""
    def fault(h: _Handler, body: bytes) -> None:
        h.record.status = 200
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len(body)}"
                f"\r\nETag: {h.fs.etag(h.path)}\r\nConnection: close\r\n\r\n").encode()
        stream = (head if headers_too else b"") + body
        if not headers_too:
            h.wfile.write(head)
            h.wfile.flush()
        for i in range(len(stream)):
            if h.fs.release.wait(1.0 / rate):
                break
            try:
                h.wfile.write(stream[i:i + 1])
                h.wfile.flush()
            except OSError:
                break
            h.record.sent += 1
        h.close_connection = True
    return fault


def html_page(h: _Handler, body: bytes) -> None:
    """HTTP 200 with an HTML error page, chunked (no Content-Length), then a dropped connection."""
    page = b"<html><body>Error: quota exceeded</body></html>"
    h.record.status = 200
    h.send_response(200)
    h.send_header("Content-Type", "text/html; charset=utf-8")
    h.send_header("Connection", "close")
    h.end_headers()
    h.wfile.write(page)
    h.record.sent += len(page)
    h.close_connection = True


def gzip_body(h: _Handler, body: bytes) -> None:
    """The body compressed on the fly (Content-Encoding: gzip) although identity was asked for."""
    packed = gzip.compress(body, mtime=0)
    h.head(200, len(packed), {"Content-Encoding": "gzip"})
    h.write(packed)


def gzip_body_no_length(h: _Handler, body: bytes) -> None:
    """As ``gzip_body``, without a Content-Length (the body ends when the connection closes)."""
    packed = gzip.compress(body, mtime=0)
    h.head(200, 0, {"Content-Encoding": "gzip", "Content-Length": ""})
    h.write(packed)


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """(cert.pem, key.pem): a self-signed certificate for 127.0.0.1 and localhost."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlfreeze test mirror")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def serving(tls_dir: Path | None = None) -> Iterator[FaultServer]:
    """Start a FaultServer, yield it, stop it."""
    fs = FaultServer(tls_dir).start()
    try:
        yield fs
    finally:
        fs.stop()


@pytest.fixture
def server() -> Iterator[FaultServer]:
    """A plain-HTTP FaultServer on 127.0.0.1."""
    yield from serving()


@pytest.fixture
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultServer]:
    """An HTTPS FaultServer on 127.0.0.1 with a self-signed certificate (``.cert_file``)."""
    yield from serving(tmp_path_factory.mktemp("tls"))


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
