"""``photo-search``: index a photo folder, search it by text, list the faces in photos.

    photo-search index DIR [--index PATH] [--rebuild] [--json]
    photo-search search TEXT [-k N] [--index PATH] [--json]
    photo-search faces DIR [--threshold T] [--json]
    photo-search --health | --version
    photo-search --mlfreeze-probe REQUEST.json    (the self-test's probe: mlfreeze_runtime.app)

Exit codes: 0 ok, 1 a model failed while running, 2 usage/config (bad argument, missing
folder or index, bad models.json, index built with other models), 3 the feature needs the
ML stack or models this installation lacks (e.g. ``faces`` in the lite bundle).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from photo_search import APP_NAME, __version__
from photo_search.errors import AppError, ModelsNotFound, Unavailable, UsageError

INDEX_ENV = "PHOTO_SEARCH_INDEX"


def default_index_path() -> Path:
    """``$PHOTO_SEARCH_INDEX``, else ``<per-user data dir>/photo-search/index``."""
    env = os.environ.get(INDEX_ENV)
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / APP_NAME / "index"


def _note(msg: str) -> None:
    print(f"{APP_NAME}: note: {msg}", file=sys.stderr)


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return n


def _folder(value: str) -> Path:
    p = Path(value).expanduser()
    if not p.is_dir():
        raise UsageError(f"{value} is not a folder")
    return p.resolve()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=APP_NAME, description="Search your photos by text and find the faces in them.",
                                epilog="Exit codes: 0 ok, 1 model failure, 2 usage/config, 3 feature unavailable.")
    p.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    p.add_argument("--health", action="store_true", help="print a JSON health report and exit 0")
    p.add_argument("--mlfreeze-probe", metavar="REQUEST.json", default=None,
                   help="embed the texts/images/faces of REQUEST.json and print them as JSON "
                        "(photo-search-selftest's probe)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    ix = sub.add_parser("index", help="index the images in a folder (CLIP + faces, or file names only)")
    ix.add_argument("folder", metavar="DIR")
    ix.add_argument("--rebuild", action="store_true", help="discard the existing index first")
    se = sub.add_parser("search", help="search the index by text")
    se.add_argument("text")
    se.add_argument("-k", type=_positive, default=10, help="number of results (default 10)")
    for s in (ix, se):
        s.add_argument("--index", type=Path, default=None,
                       help=f"index directory (default ${INDEX_ENV}, else {default_index_path()})")
    fa = sub.add_parser("faces", help="detect faces and group the same face across images")
    fa.add_argument("folder", metavar="DIR")
    fa.add_argument("--threshold", type=float, default=0.5,
                    help="cosine similarity for two faces to count as the same person (default 0.5)")
    for s in (ix, se, fa):
        s.add_argument("--json", action="store_true", help="print JSON instead of lines")
    return p


def main(argv: list[str] | None = None) -> int:
    from mlfreeze_runtime.app import filter_known_warnings, probe_request_path

    filter_known_warnings()
    argv = sys.argv[1:] if argv is None else list(argv)
    if probe_request_path(argv) is not None:
        return cmd_probe(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.health:
            from photo_search.health import report

            print(json.dumps(report(), indent=2, default=str))
            return 0
        if args.command is None:
            parser.print_usage(sys.stderr)
            print(f"{APP_NAME}: error: name a command (index, search, faces) or --health", file=sys.stderr)
            return 2
        return {"index": cmd_index, "search": cmd_search, "faces": cmd_faces}[args.command](args)
    except AppError as exc:
        print(f"{APP_NAME}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{APP_NAME}: interrupted", file=sys.stderr)
        return 130


# ---- models available to this run ----
def _model_set() -> Any:
    """The model set, or None (with a note) when there are no models; bad models.json raises."""
    from photo_search.models import locate_model_set

    try:
        return locate_model_set()
    except ModelsNotFound as exc:
        _note(exc.message)
        return None


def _usable(kind: str, modules: tuple[str, ...], feature: str, model_set: Any) -> Any:
    """The model entry of ``kind`` when its libraries import and the set has one, else None (with a note)."""
    from photo_search.embed import require

    try:
        require(modules, feature)
    except Unavailable as exc:
        _note(exc.message)
        return None
    if model_set is None:
        return None
    entry = model_set.first(kind)
    if entry is None:
        _note(f"{feature} unavailable: no {kind} model in {model_set.directory / 'models.json'}")
    return entry


# ---- the self-test's probe ----
def cmd_probe(argv: list[str]) -> int:
    """``--mlfreeze-probe REQUEST.json``: the request answered by the same embedders the commands use."""
    from mlfreeze_runtime.app import handle_probe
    from photo_search import embed

    try:
        model_set = _model_set()
        clip_entry = _usable("clip", embed.CLIP_MODULES, "CLIP search", model_set)
        face_entry = _usable("insightface", embed.FACE_MODULES, "face features", model_set)
        clip = embed.ClipEmbedder(clip_entry) if clip_entry is not None else None
        faces = embed.FaceEmbedder(face_entry) if face_entry is not None else None
    except AppError as exc:
        print(f"{APP_NAME}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code

    def embed_images(paths: list[Path]) -> Any:
        assert clip is not None
        vectors, _, skipped = clip.embed_images(paths)
        if skipped:
            raise ValueError(skipped[0])
        return vectors

    code = handle_probe(argv, prog=APP_NAME,
                        embed_texts=clip.embed_texts if clip is not None else None,
                        embed_images=embed_images if clip is not None else None,
                        embed_faces=faces.embed_faces if faces is not None else None)
    return 2 if code is None else code


# ---- index ----
def cmd_index(args: argparse.Namespace) -> int:
    from photo_search import embed
    from photo_search.index import PhotoIndex, check_models, describe, is_under, model_signature

    folder = _folder(args.folder)
    path = (args.index or default_index_path()).expanduser().resolve()
    missing = embed.import_errors(embed.CLIP_MODULES + embed.INDEX_MODULES)
    model_set = None if missing and embed.import_errors(embed.FACE_MODULES + embed.INDEX_MODULES) else _model_set()
    clip_entry = _usable("clip", embed.CLIP_MODULES + embed.INDEX_MODULES, "CLIP search", model_set)
    face_entry = _usable("insightface", embed.FACE_MODULES + embed.INDEX_MODULES, "face features", model_set)
    models = {"clip": model_signature(clip_entry), "faces": model_signature(face_entry)}

    old = None if args.rebuild else PhotoIndex.read_sidecar(path)
    if old is not None:
        check_models(path, old.models, models, ("clip", "faces"))
        if clip_entry or face_entry:
            old.load_vectors()
    paths = embed.list_images(folder)
    new = PhotoIndex(path=path, models=models, created=old.created if old else "")
    keep = [i for i, p in enumerate(old.images) if not is_under(p, folder)] if old else []
    warnings: list[str] = []

    if clip_entry is not None:
        vectors, ok, warnings = embed.ClipEmbedder(clip_entry).embed_images(paths)
        paths = [paths[i] for i in ok]
        import numpy as np

        parts = [old.image_vectors[keep]] if old is not None and keep else []
        new.image_vectors = np.concatenate([*parts, vectors]) if parts else vectors
    new.images = [old.images[i] for i in keep] if old else []
    new.images += [str(p) for p in paths]

    face_rows: list[Any] = []
    if old is not None:  # carry over the faces of the images kept
        renum = {old_i: new_i for new_i, old_i in enumerate(keep)}
        for f in old.faces:
            if f["image"] in renum:
                row = None
                if f.get("row") is not None and old.face_vectors is not None:
                    row = len(face_rows)
                    face_rows.append(old.face_vectors[f["row"]])
                new.faces.append({**f, "image": renum[f["image"]], "row": row})
    if face_entry is not None:
        detector = embed.FaceEmbedder(face_entry)
        for n, p in enumerate(paths, start=len(keep)):
            try:
                found = detector.detect(p)
            except (OSError, ValueError) as exc:
                warnings.append(f"skipped faces in {p}: {type(exc).__name__}: {exc}")
                continue
            for face in found:
                row = None
                if face.embedding is not None:
                    row = len(face_rows)
                    face_rows.append(face.embedding)
                new.faces.append({"image": n, "bbox": list(face.bbox), "score": face.score, "row": row})
        if face_rows:
            import numpy as np

            new.face_vectors = np.stack(face_rows).astype("float32")
    new.save()

    for w in warnings:
        print(f"{APP_NAME}: warning: {w}", file=sys.stderr)
    summary = {"index": str(path), "folder": str(folder), "mode": new.mode, "added": len(paths),
               "images": len(new.images), "faces": len(new.faces), "skipped": len(warnings),
               "models": new.models}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"indexed {len(paths)} images from {folder} into {path} ({len(new.images)} images, "
              f"{len(new.faces)} faces in the index; {describe(new.models)})")
    return 0


# ---- search ----
def cmd_search(args: argparse.Namespace) -> int:
    from photo_search import embed
    from photo_search.index import PhotoIndex, check_models, model_signature, search_names, search_vectors

    if not args.text.strip():
        raise UsageError("the search text is empty")
    path = (args.index or default_index_path()).expanduser().resolve()
    idx = PhotoIndex.read_sidecar(path)
    if idx is None:
        raise UsageError(f"no index at {path}: run `{APP_NAME} index DIR` first (or pass --index)")

    mode = "names"
    if idx.mode == "clip":
        clip_entry = _usable("clip", embed.CLIP_MODULES + embed.INDEX_MODULES, "CLIP search",
                             None if embed.import_errors(embed.CLIP_MODULES + embed.INDEX_MODULES) else _model_set())
        if clip_entry is None:
            _note("matching file names instead")
        else:
            check_models(path, idx.models, {"clip": model_signature(clip_entry)}, ("clip",))
            idx.load_vectors(reconstruct=False)
            query = embed.ClipEmbedder(clip_entry).embed_text(args.text)
            results = search_vectors(idx.image_faiss, idx.images, query, args.k)
            mode = "clip"
    else:
        _note(f"index {path} holds no CLIP embeddings; matching file names")
    if mode == "names":
        results = search_names(idx.images, args.text, args.k)

    if args.json:
        print(json.dumps({"query": args.text, "mode": mode, "index": str(path),
                          "results": [{"rank": r, "score": s, "path": p} for r, (s, p) in enumerate(results, 1)]},
                         indent=2))
    else:
        for score, p in results:
            print(f"{score:.4f}  {p}")
        if not results:
            _note("no matches")
    return 0


# ---- faces ----
def cmd_faces(args: argparse.Namespace) -> int:
    from photo_search import embed
    from photo_search.models import locate_model_set

    folder = _folder(args.folder)
    embed.require(embed.FACE_MODULES, "face features")
    model_set = locate_model_set()
    entry = model_set.first("insightface")
    if entry is None:
        raise Unavailable(f"face features unavailable: no insightface model in {model_set.directory / 'models.json'}")
    detector = embed.FaceEmbedder(entry)
    images: list[tuple[Path, list[embed.Face]]] = []
    embeddings: list[Any] = []
    warnings: list[str] = []
    for p in embed.list_images(folder):
        try:
            found = detector.detect(p)
        except (OSError, ValueError) as exc:
            warnings.append(f"skipped {p}: {type(exc).__name__}: {exc}")
            continue
        images.append((p, found))
        embeddings.extend(f.embedding for f in found)
    labels = iter(embed.group_faces(embeddings, args.threshold))
    out: list[dict[str, Any]] = [{"path": str(p), "count": len(found),
            "faces": [{"bbox": list(f.bbox), "score": f.score, "group": next(labels)} for f in found]}
           for p, found in images]
    groups = len({f["group"] for i in out for f in i["faces"] if f["group"]})
    for w in warnings:
        print(f"{APP_NAME}: warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps({"folder": str(folder), "model": entry.id, "images": out, "groups": groups,
                          "skipped": len(warnings)}, indent=2))
        return 0
    for item in out:
        print(f"{item['path']}: {item['count']} face{'s' if item['count'] != 1 else ''}")
        for f in item["faces"]:
            box = ", ".join(f"{v:.0f}" for v in f["bbox"])
            group = f" person {f['group']}" if f["group"] else ""
            print(f"  [{box}] score {f['score']:.2f}{group}")
    total = sum(i["count"] for i in out)
    print(f"{len(out)} images, {total} faces, {groups} distinct people (threshold {args.threshold})")
    return 0
