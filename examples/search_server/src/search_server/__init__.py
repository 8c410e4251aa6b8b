"""search-server: photo search over HTTP (FastAPI + uvicorn), CLIP and faces, a SQLite index."""

APP_NAME = "search-server"
__version__ = "0.1.0"
