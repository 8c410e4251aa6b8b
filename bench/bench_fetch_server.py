"""A fast Range-aware HTTP server for the fetch benchmarks (sendfile), run as its own process.

    python bench/bench_fetch_server.py DIR PORT_FILE LOG_FILE

Serves DIR with Last-Modified (If-Range honoured); ``/cut/<N>/<name>`` sends the first N bytes
of the answer, then closes the connection; so does the next request for ``<name>`` while a file
``DIR/.cut-<name>`` holding N exists (it is removed: one cut, same URL). ``/drip/<B>/<name>``
sends one byte every 1/B seconds. Each request is logged to LOG_FILE as
``<path> <range or -> <bytes sent>``.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    root = Path(".")
    log_lock = threading.Lock()
    log_file = "/dev/null"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        parts = self.path.split("?")[0].strip("/").split("/")
        cut, drip = None, None
        if parts[0] == "cut":
            cut, parts = int(parts[1]), parts[2:]
        elif parts[0] == "drip":
            drip, parts = float(parts[1]), parts[2:]
        path = self.root / "/".join(parts)
        marker = self.root / f".cut-{'/'.join(parts)}"
        if cut is None and marker.is_file():
            cut = int(marker.read_text())
            marker.unlink()
        if not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = path.stat().st_size
        modified = formatdate(path.stat().st_mtime, usegmt=True)
        start = 0
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-") and if_range in (None, modified):
            start = int(rng[6:-1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Last-Modified", modified)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if drip is not None:
            self._drip(path, start, size, drip, rng)
            return
        count = size - start if cut is None else min(cut, size - start)
        self.wfile.flush()
        sent = 0
        with open(path, "rb") as f:
            try:
                while sent < count:
                    n = self.connection.sendfile(f, offset=start + sent, count=min(count - sent, 1 << 26))
                    if not n:
                        break
                    sent += n
            except OSError:
                pass
        if cut is not None:
            self.connection.shutdown(socket.SHUT_RDWR)  # the cut: a FIN after N bytes
        with self.log_lock, open(self.log_file, "a") as log:
            log.write(f"{self.path} {rng or '-'} {sent}\n")


    def _drip(self, path: Path, start: int, size: int, rate: float, rng: str | None) -> None:
        sent = 0
        with open(path, "rb") as f:
            f.seek(start)
            try:
                while byte := f.read(1):
                    self.wfile.write(byte)
                    self.wfile.flush()
                    sent += 1
                    time.sleep(1 / rate)
            except OSError:
                pass
        with self.log_lock, open(self.log_file, "a") as log:
            log.write(f"{self.path} {rng or '-'} {sent}\n")


def main() -> None:
    root, port_file, log_file = sys.argv[1:4]
    Handler.root = Path(root)
    Handler.log_file = log_file
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = port_file + ".tmp"
    Path(tmp).write_text(str(server.server_address[1]))
    os.replace(tmp, port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
