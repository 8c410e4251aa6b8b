"""embedserve: a tiny stdlib HTTP embedding server, the test app of `mlfreeze image`.

    embedserve [serve]                       # HTTP on $HOST:$PORT: /embed?text=..., /livez, /readyz
    embedserve --health                      # one JSON object: what this build can do
    embedserve --mlfreeze-probe REQUEST.json # the frozen self-test's probe (mlfreeze's app contract)

Models and device come from mlfreeze's runtime (models.json in $MLFREEZE_MODELS_DIR, the device
from DEVICE/MODEL_DEVICE); /livez and /readyz from mlfreeze_runtime.readiness, mounted in the app's
own WSGI server: /readyz is 200 only after every model file matched its sha256 and the
bundle's self-test passed. Standard library plus the runtime: no web framework.
"""

from __future__ import annotations

import json
import os
import sys
from functools import cache
from typing import Any
from urllib.parse import parse_qs

APP = "embedserve"
VERSION = "0.1.0"


@cache
def clip() -> Any:
    """The bundle's CLIP (torch in a full bundle, the ONNX towers in a slim one)."""
    from mlfreeze_runtime.clip import embedder_for, torch_clip_available
    from mlfreeze_runtime.device import get_onnx_providers
    from mlfreeze_runtime.modelindex import find_models_dir, read_models_index

    base, _ = find_models_dir()
    if base is None:
        raise RuntimeError("no models: set MLFREEZE_MODELS_DIR to a folder holding models.json")
    entry = read_models_index(base).first("clip")
    if entry is None:
        raise RuntimeError(f"{base / 'models.json'} lists no CLIP model")
    device = os.environ.get("MODEL_DEVICE") or os.environ.get("DEVICE") or "cpu"
    providers = None if torch_clip_available() else get_onnx_providers()
    return embedder_for(entry, device=device, providers=providers)


def embed_texts(texts: list[str]) -> list[list[float]]:
    return [[float(x) for x in row] for row in clip().texts(texts)]


def embed_images(paths: list[str]) -> list[list[float]]:
    import numpy as np
    from PIL import Image

    return [[float(x) for x in row] for row in clip().images([np.asarray(Image.open(p).convert("RGB"))
                                                              for p in paths])]


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """GET /embed?text=...: {"text": ..., "embedding": [...]}."""
    if environ.get("PATH_INFO") != "/embed":
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "not found"}\n']
    text = (parse_qs(environ.get("QUERY_STRING", "")).get("text") or ["a photo"])[0]
    body = json.dumps({"text": text, "embedding": embed_texts([text])[0]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def serve() -> int:
    from mlfreeze_runtime.readiness import (
        Readiness,
        listen_address,
        make_server,
        probes_middleware,
        serve_until_stopped,
    )

    host, port = listen_address()
    readiness = Readiness()
    server = make_server(probes_middleware(app, readiness), host, port)  # bound: /livez answers now
    readiness.start()  # sha256 of every model file, then <app>-selftest, in the background
    print(f"{APP}: listening on {host}:{port}", file=sys.stderr, flush=True)
    return serve_until_stopped(server)  # SIGTERM (podman stop) ends it at once, also as PID 1


def main(argv: list[str]) -> int:
    from mlfreeze_runtime.app import handle_probe, health

    code = handle_probe(argv, embed_texts=embed_texts, embed_images=embed_images, prog=APP)
    if code is not None:
        return code
    if argv[:1] == ["--health"]:
        print(json.dumps(health(app=APP, version=VERSION)))
        return 0
    if argv in ([], ["serve"]):
        return serve()
    print(f"{APP}: error: unknown arguments {argv}; use serve, --health or --mlfreeze-probe", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
