"""The HTTP API (FastAPI). Models load once at start-up (:mod:`search_server.models`); in a build
without them (the lite bundle) the server still starts and the ML endpoints answer 503.

    GET  /livez                   200 {"status": "alive"} as soon as the server answers (liveness)
    GET  /readyz                  503 {"status": "checking"|"failed", "reason", "files"} until every model
                                  file matched its sha256 in models.json and the bundle's self-test passed,
                                  then 200 {"status": "ready", "models": [ids]} (mlfreeze_runtime.readiness)
    GET  /healthz                 {"status": "ok", "ml_available", "ml_reason", "models", "indexed", ...}
    POST /embed/text              {"text": str} -> {"embedding": [float], "model", "dim"}
    POST /embed/image             multipart file -> {"embedding": [float], "model", "dim"}
    POST /faces                   multipart file -> {"faces": [{"bbox", "score", "embedding"}]}, best first
    POST /index                   multipart file (+ form field name) -> {"id", "sha256", "faces"}
    GET  /search?q=TEXT&k=5       {"results": [{"id", "name", "score", "thumb"}]}

Embeddings are L2-normalised float lists; errors are ``{"detail": "..."}`` with 400 (bad input)
or 503 (the models are not available in this build).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from search_server import APP_NAME, __version__
from search_server.models import Models, ModelsUnavailable, load, read_bgr, read_rgb
from search_server.store import Store


class TextIn(BaseModel):
    text: str


class State:
    store: Store
    data: Path
    models: Models | None = None
    reason: str | None = None
    readiness: Any = None  # mlfreeze_runtime.readiness.Readiness, started with the server


def create_app(data: Path | None = None) -> FastAPI:
    """The app; ``data`` defaults to ``mlfreeze_runtime.app.data_dir("search-server")``."""
    state = State()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        from mlfreeze_runtime.app import data_dir
        from mlfreeze_runtime.readiness import Readiness

        # ready means verified: the models' sha256 and (in a bundle) its self-test, in the background
        state.readiness = Readiness().start()
        state.data = data or data_dir(APP_NAME)
        state.store = Store(state.data)
        try:
            state.models = load(state.data / "models-work")
        except ModelsUnavailable as exc:
            state.reason = str(exc)
        yield
        state.store.close()

    app = FastAPI(title=APP_NAME, version=__version__, lifespan=lifespan)

    def models() -> Models:
        if state.models is None:
            raise HTTPException(503, f"models unavailable: {state.reason}")
        return state.models

    def decode(raw: bytes, how: Any) -> Any:
        import io

        try:
            return how(io.BytesIO(raw))
        except Exception as exc:  # PIL raises several kinds for a file that is not an image
            raise HTTPException(400, f"not a readable image ({type(exc).__name__})") from None

    @app.get("/livez")
    def livez() -> JSONResponse:
        return JSONResponse(state.readiness.livez()[1])

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        code, doc = state.readiness.readyz()
        return JSONResponse(doc, status_code=code, headers={"Cache-Control": "no-store"}
                            | ({"Retry-After": "5"} if code == 503 else {}))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        m = state.models
        return {"status": "ok", "app": APP_NAME, "version": __version__, "ml_available": m is not None,
                "ml_reason": state.reason, "models": {"clip": m.clip_id, "faces": m.faces_id} if m else None,
                "data_dir": str(state.data), "indexed": state.store.count()}

    @app.post("/embed/text")
    def embed_text(body: TextIn) -> dict[str, Any]:
        m = models()
        vec = m.clip.embed_texts([body.text])[0]
        return {"embedding": [float(x) for x in vec], "model": m.clip_id, "dim": len(vec)}

    @app.post("/embed/image")
    def embed_image(file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008 (FastAPI's declaration)
        m = models()
        vec = m.clip.embed_images([decode(file.file.read(), read_rgb)])[0]
        return {"embedding": [float(x) for x in vec], "model": m.clip_id, "dim": len(vec)}

    @app.post("/faces")
    def faces(file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008
        m = models()
        if m.faces is None:
            raise HTTPException(503, "this model set has no face model")
        found = sorted(m.faces.detect(decode(file.file.read(), read_bgr)), key=lambda f: -f.score)
        return {"model": m.faces_id, "faces": [
            {"bbox": list(f.bbox), "score": f.score,
             "embedding": None if f.embedding is None else [float(x) for x in f.embedding]} for f in found]}

    @app.post("/index")
    def index(file: UploadFile = File(...), name: str | None = Form(None)) -> dict[str, Any]:  # noqa: B008
        m = models()
        raw = file.file.read()
        vec = m.clip.embed_images([decode(raw, read_rgb)])[0]
        n_faces = len(m.faces.detect(decode(raw, read_bgr))) if m.faces is not None else 0
        label = name or file.filename or "upload"
        image_id, sha = state.store.add(name=label, data=raw, suffix=Path(file.filename or "x.jpg").suffix or ".jpg",
                                        embedding=vec, faces=n_faces)
        return {"id": image_id, "sha256": sha, "name": label, "faces": n_faces}

    @app.get("/search")
    def search(q: str = Query(..., min_length=1), k: int = Query(5, ge=1, le=100)) -> dict[str, Any]:
        m = models()
        query = m.clip.embed_texts([q])[0]
        try:
            hits = state.store.search(query, k)
        except ImportError as exc:
            raise HTTPException(503, f"search unavailable: {exc}") from None
        return {"query": q, "results": [{"id": h.id, "name": h.name, "score": h.score, "thumb": h.thumb}
                                        for h in hits]}

    return app
