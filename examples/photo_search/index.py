"""The on-disk index: FAISS files for embeddings plus a JSON sidecar.

Layout of an index directory::

    index.json     sidecar: format version, the models that made the vectors (id, arch,
                   sha256 fingerprint), the image paths (row i of images.faiss is images[i]),
                   the faces found (image number, box, score, row in faces.faiss)
    images.faiss   IndexFlatIP over unit-norm CLIP image embeddings (absent in names mode)
    faces.faiss    IndexFlatIP over unit-norm face embeddings (absent without a face model)

An index made without models ("names" mode: the lite bundle) holds only the sidecar and is
searched by file name. An index is written into a fresh sibling directory and swapped in,
so a failed run leaves the old index as it was. Loading FAISS files needs numpy + faiss;
the sidecar alone needs only the standard library.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from photo_search import APP_NAME, __version__
from photo_search.errors import IndexMismatch, UsageError
from photo_search.models import ModelEntry

INDEX_FORMAT = 1
SIDECAR = "index.json"
IMAGES_FAISS = "images.faiss"
FACES_FAISS = "faces.faiss"


def model_signature(entry: ModelEntry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {"id": entry.id, "kind": entry.kind, "arch": entry.arch, "embed_dim": entry.embed_dim,
            "sha256": entry.fingerprint()}


def describe(models: dict[str, Any]) -> str:
    parts = [f"{role} model {sig['id']} (sha256 {sig['sha256'][:12]})"
             for role, sig in sorted(models.items()) if sig]
    return ", ".join(parts) if parts else "no models (file names only)"


def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    return bool(a.get("sha256") == b.get("sha256") and a.get("arch") == b.get("arch"))


def check_models(index_path: Path, stored: dict[str, Any], current: dict[str, Any], roles: tuple[str, ...]) -> None:
    """Refuse (``IndexMismatch``) when the models for ``roles`` differ from the index's."""
    for role in roles:
        if not _same(stored.get(role), current.get(role)):
            raise IndexMismatch(
                f"index {index_path} was built with {describe(stored)}; this run has {describe(current)}: "
                f"use another --index or re-index with --rebuild")


@dataclass(kw_only=True)
class PhotoIndex:
    path: Path
    models: dict[str, Any] = field(default_factory=lambda: {"clip": None, "faces": None})
    images: list[str] = field(default_factory=list)
    faces: list[dict[str, Any]] = field(default_factory=list)
    image_vectors: Any = None  # float32 [len(images), d] when models["clip"] is set
    face_vectors: Any = None  # float32 [n, d] rows referenced by faces[i]["row"]
    image_faiss: Any = None  # the faiss index read from images.faiss
    face_faiss: Any = None
    created: str = ""

    @property
    def mode(self) -> str:
        return "clip" if self.models.get("clip") else "names"

    # ---- reading ----
    @classmethod
    def read_sidecar(cls, path: Path) -> PhotoIndex | None:
        """The index at ``path`` without its vectors, or None when there is none."""
        if path.exists() and not path.is_dir():
            raise UsageError(f"{path} is a file; --index names a folder")
        src = path / SIDECAR
        if not src.exists():
            if path.exists() and any(path.iterdir()):
                raise UsageError(f"{path} exists but is not a photo-search index (no {SIDECAR})")
            return None
        try:
            raw = json.loads(src.read_text(encoding="utf-8"))
            if raw.get("format") != INDEX_FORMAT:
                raise UsageError(f"{src}: index format {raw.get('format')!r} is not {INDEX_FORMAT}: "
                                 "re-index with --rebuild")
            return cls(path=path, models=dict(raw["models"]), images=list(raw["images"]),
                       faces=list(raw.get("faces", [])), created=str(raw.get("created", "")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"{src} is unreadable ({type(exc).__name__}: {exc}): re-index with --rebuild") from None

    def load_vectors(self, *, reconstruct: bool = True) -> None:
        """Read the FAISS files (needs numpy + faiss) and check them against the sidecar.

        ``reconstruct``: also copy the vectors out as arrays (to merge them into a new index);
        a search needs only the faiss indexes."""
        import faiss

        def read(name: str, rows: int, sig: dict[str, Any] | None) -> Any:
            f = self.path / name
            if sig is None or rows == 0:
                return None
            if not f.is_file():
                raise UsageError(f"{f} is missing: re-index with --rebuild")
            idx = faiss.read_index(str(f))
            if idx.ntotal != rows or idx.d != sig["embed_dim"]:
                raise UsageError(f"{f} holds {idx.ntotal}x{idx.d} vectors, the sidecar says {rows}x{sig['embed_dim']}: "
                                 f"re-index with --rebuild")
            return idx

        self.image_faiss = read(IMAGES_FAISS, len(self.images), self.models.get("clip"))
        n_face_rows = sum(1 for f in self.faces if f.get("row") is not None)
        self.face_faiss = read(FACES_FAISS, n_face_rows, self.models.get("faces"))
        if reconstruct and self.image_faiss is not None:
            self.image_vectors = self.image_faiss.reconstruct_n(0, len(self.images))
        if reconstruct and self.face_faiss is not None:
            self.face_vectors = self.face_faiss.reconstruct_n(0, n_face_rows)

    # ---- writing ----
    def save(self) -> None:
        """Write into a sibling temp dir, then swap it in place of the old index."""
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        tmp = parent / f".{self.path.name}.new-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()  # (not mkdtemp: its 0700 mode would outlive the swap)
        try:
            if self.models.get("clip") and self.image_vectors is not None and len(self.images):
                _write_faiss(tmp / IMAGES_FAISS, self.image_vectors)
            if self.models.get("faces") and self.face_vectors is not None and len(self.face_vectors):
                _write_faiss(tmp / FACES_FAISS, self.face_vectors)
            sidecar = {"format": INDEX_FORMAT, "app": APP_NAME, "app_version": __version__,
                       "created": self.created or now, "updated": now, "mode": self.mode,
                       "models": self.models, "images": self.images, "faces": self.faces}
            (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=1) + "\n", encoding="utf-8")
            old = None
            if self.path.exists():
                old = parent / f".{self.path.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
                self.path.rename(old)
            tmp.rename(self.path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _write_faiss(path: Path, vectors: Any) -> None:
    import faiss
    import numpy as np

    vectors = np.ascontiguousarray(vectors, dtype="float32")
    idx = faiss.IndexFlatIP(vectors.shape[1])
    idx.add(vectors)
    faiss.write_index(idx, str(path))


# ---- searching ----
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
# English function words: a file name "matches" them by accident (astronaut.png holds "a"), so a
# query's stop words count only when the query has nothing else.
STOP_WORDS = frozenset(["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "of",
                        "on", "or", "the", "to", "with"])


def query_tokens(query: str) -> list[str]:
    """The words of ``query`` that name something: stop words dropped (unless that leaves none)."""
    tokens = _TOKEN.findall(query.strip().lower())
    content = [t for t in tokens if t not in STOP_WORDS]
    return content or tokens


def _scorer(query: str) -> Any:
    q = query.strip().lower()
    tokens = query_tokens(q)

    def score(path: str) -> float:
        name = path.replace("\\", "/").rsplit("/", 1)[-1].lower()
        if not q:
            return 0.0
        if q in name:
            return 1.0
        if not tokens:
            return 0.0
        return round(sum(1 for t in tokens if t in name) / len(tokens), 4)

    return score


def name_score(query: str, path: str) -> float:
    """1.0 when the whole query occurs in the file name (case-insensitive), else the share of
    query words (:func:`query_tokens`: stop words such as "a" dropped) that occur in it, else 0."""
    return float(_scorer(query)(path))


def search_names(images: list[str], query: str, k: int) -> list[tuple[float, str]]:
    score = _scorer(query)
    scored = [(score(p), p) for p in images]
    hits = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1]))
    return hits[:k]


def search_vectors(idx: Any, images: list[str], query_vector: Any, k: int) -> list[tuple[float, str]]:
    """Top ``k`` images of the faiss index ``idx`` by inner product (= cosine: both sides are
    unit-norm), best first."""
    import numpy as np

    if idx is None or len(images) == 0:
        return []
    scores, rows = idx.search(np.ascontiguousarray(query_vector, dtype="float32"), min(k, len(images)))
    return [(round(float(s), 6), images[int(r)]) for s, r in zip(scores[0], rows[0], strict=True) if r >= 0]


def is_under(path: str, folder: Path) -> bool:
    try:
        Path(path).relative_to(folder)
        return True
    except ValueError:
        return False
