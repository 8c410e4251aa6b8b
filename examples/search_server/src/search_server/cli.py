"""``search-server [--host H] [--port P]``: serve the API with uvicorn until SIGTERM or Ctrl-C.

The port is ``--port``, else ``$PORT``, else 8000; the host ``--host``, else ``$HOST``, else
127.0.0.1. Files go to :func:`mlfreeze_runtime.app.data_dir` (``$MLFREEZE_DATA_DIR`` overrides).
"""

from __future__ import annotations

import argparse
import os
import sys

from search_server import APP_NAME, __version__


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=APP_NAME, description="Photo search over HTTP: CLIP, faces, a SQLite index.")
    ap.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    ap.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="address to listen on")
    ap.add_argument("--port", type=_port, default=None, help="port to listen on (default $PORT, else 8000)")
    ap.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    port = args.port
    if port is None:
        try:
            port = _port(os.environ.get("PORT", "8000"))
        except argparse.ArgumentTypeError as exc:
            ap.error(f"$PORT: {exc}")

    import uvicorn

    from search_server.api import create_app

    uvicorn.run(create_app(), host=args.host, port=port, log_level=args.log_level)
    return 0
