"""The photo index: a SQLite database and the image files, all under the app's data directory.

``<data>/search.db`` holds one row per indexed image (its sha256, name, CLIP embedding as float32
bytes, face count); ``<data>/images/<sha256><ext>`` the uploaded bytes and
``<data>/thumbs/<sha256>.jpg`` a 256-pixel thumbnail. The data directory is
:func:`mlfreeze_runtime.app.data_dir` (never inside the bundle, whose files RECORD pins).
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

THUMB_SIZE = (256, 256)
SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    sha256 TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    thumb TEXT NOT NULL,
    dim INTEGER NOT NULL,
    embedding BLOB NOT NULL,
    faces INTEGER NOT NULL,
    added REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Hit:
    id: int
    name: str
    score: float
    thumb: str


class Store:
    """Thread-safe (one lock) access to the index; FastAPI runs plain endpoints in a thread pool."""

    def __init__(self, data: Path) -> None:
        self.data = data
        (data / "images").mkdir(parents=True, exist_ok=True)
        (data / "thumbs").mkdir(parents=True, exist_ok=True)
        self.path = data / "search.db"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute(SCHEMA)
        self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def add(self, *, name: str, data: bytes, suffix: str, embedding: Any, faces: int) -> tuple[int, str]:
        """Store an image, its thumbnail and its embedding ((D,) float32); ``(id, sha256)``. The same
        bytes twice keep one row (the newer name and embedding)."""
        from PIL import Image

        sha = hashlib.sha256(data).hexdigest()
        image_path = self.data / "images" / f"{sha}{suffix.lower()}"
        thumb_path = self.data / "thumbs" / f"{sha}.jpg"
        image_path.write_bytes(data)
        with Image.open(io.BytesIO(data)) as im:
            thumb = im.convert("RGB")
            thumb.thumbnail(THUMB_SIZE)
            thumb.save(thumb_path, "JPEG", quality=85)
        vec = embedding.astype("float32").tobytes()
        with self._lock:
            self._db.execute(
                "INSERT INTO images (sha256, name, path, thumb, dim, embedding, faces, added) VALUES (?,?,?,?,?,?,?,?) "
                "ON CONFLICT(sha256) DO UPDATE SET name=excluded.name, embedding=excluded.embedding, "
                "dim=excluded.dim, faces=excluded.faces",
                (sha, name, str(image_path), str(thumb_path), int(embedding.shape[-1]), vec, faces, time.time()))
            self._db.commit()
            row = self._db.execute("SELECT id FROM images WHERE sha256 = ?", (sha,)).fetchone()
        return int(row[0]), sha

    def search(self, query: Any, k: int) -> list[Hit]:
        """The ``k`` images nearest to ``query`` ((D,) float32, unit norm) by inner product, through FAISS."""
        import faiss
        import numpy as np

        with self._lock:
            rows = self._db.execute("SELECT id, name, thumb, dim, embedding FROM images").fetchall()
        rows = [r for r in rows if r[3] == query.shape[-1]]  # rows embedded by another model are skipped
        if not rows:
            return []
        matrix = np.stack([np.frombuffer(r[4], dtype=np.float32) for r in rows])
        index = faiss.IndexFlatIP(matrix.shape[1])
        index.add(matrix)
        scores, ids = index.search(query.reshape(1, -1).astype(np.float32), min(k, len(rows)))
        return [Hit(id=rows[i][0], name=rows[i][1], score=float(s), thumb=rows[i][2])
                for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
