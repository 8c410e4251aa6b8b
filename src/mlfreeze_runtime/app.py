"""The app contract: what every app mlfreeze builds answers, and the helpers that answer it.

An app mlfreeze builds (the example photo_search, the ``mlfreeze init`` scaffold, any user app)

1. **finds its models and device through the runtime**: the models folder is
   :func:`mlfreeze_runtime.modelindex.find_models_dir` (``$MLFREEZE_MODELS_DIR``, which the
   bundle's runtime hook sets to the bundle's ``models/`` when the user has not set it), its
   index is read with :func:`mlfreeze_runtime.modelindex.read_models_index`, models are loaded
   with :func:`mlfreeze_runtime.clip.load_entry` / :func:`mlfreeze_runtime.faces.load_entry`,
   and the torch device and onnxruntime providers come from :mod:`mlfreeze_runtime.device`;

2. **answers** ``<app> --health``: one JSON object on stdout, exit 0, whatever is broken (a
   broken part is reported, not raised). :func:`health` builds it. Keys:

   ============================  =====================================================================
   ``app``, ``version``          the app's name and version (strings)
   ``python``, ``frozen``,       interpreter version, whether this is a frozen executable, its path
   ``executable``
   ``ml_available``              true when at least one ML feature can run (its libraries import and
                                 models.json has its model)
   ``ml_reason``                 null when every feature can run, else ``"<feature>: <why not>; ..."``
   ``models_dir``                the models folder in use (absolute path) or null
   ``models_dir_source``         ``frozen`` (the bundle's own ``models/``), ``MLFREEZE_MODELS_DIR``
                                 (the user set it), ``argument`` or ``none``
   ``model_set``, ``models``     the set name and ``[{id, kind, arch, embed_dim, files}]`` from
                                 models.json ([] when unreadable)
   ``models_error``              null, or the one line saying why models.json is unusable and what to do
   ``device``                    :func:`mlfreeze_runtime.device.get_device_info` (``device``,
                                 ``onnx_providers``, ``onnx_provider_options``, versions, ...); a bad
                                 ``DEVICE`` shows as ``device: null`` with ``error``
   ``features``                  ``{name: {"available": bool, "reason": str | null}}`` (app-defined)
   ============================  =====================================================================

   Apps may add keys (photo_search adds ``ml_libraries``).

3. **answers the self-test's probe through its own embedding code**::

       <app> --mlfreeze-probe REQUEST.json

   ``REQUEST.json`` is ``{"texts": [str, ...], "images": [path, ...], "faces": [path, ...]}`` (every
   key optional; paths absolute). The app prints one JSON object on stdout and exits 0::

       {"text": [[float, ...], ...], "image": [[...], ...], "face": [[...] | null, ...]}

   one row per input, in input order: ``text`` the embedding of each text, ``image`` of each
   image, ``face`` of the highest-scoring face in each image (``null`` when it finds none). Rows
   are L2-normalised float lists. A part the app does not use is left out (the app passed no
   callable for it). Exit 2 with one ``<app>: error: ...`` line on stderr for an unreadable or
   malformed request; exit 1 with one line when embedding fails. :func:`handle_probe` does the
   argument handling, the JSON and these checks; the app passes its own callables::

       code = handle_probe(sys.argv[1:], embed_texts=..., embed_images=..., embed_faces=...)
       if code is not None:
           sys.exit(code)

   ``embed_texts(list[str])`` and ``embed_images(list[Path])`` return an ``(N, D)`` array (or
   list of rows); ``embed_faces(list[Path])`` returns ``N`` rows or ``None`` each.

   Before the callables run, :func:`mlfreeze_runtime.names.install` makes the app's by-name loads
   (open_clip's ``create_model_and_transforms`` by name and tag, OpenAI's ``clip.load``,
   insightface's face analysis by pack name) resolve to the probed models folder, offline, also
   when the app runs unfrozen.

   A server declares ``[tool.mlfreeze] serve`` instead (:mod:`mlfreeze_runtime.contract`): the
   self-test starts it and sends the same inputs over HTTP; it needs no ``--mlfreeze-probe``.

4. **writes only outside its bundle**: files the app keeps (a database, thumbnails, caches) go
   under :func:`data_dir`, never beside the executable: a file written inside the bundle breaks
   its RECORD (``mlfreeze audit`` and ``<app>-update`` refuse it), and the build's self-test fails
   when a run of the app wrote there.

``<app>-selftest`` (:mod:`mlfreeze_runtime.verify.selftest`) writes such a request from the
bundled probes, runs the sibling ``<app>`` executable with it and compares each row with its own
reference embedding (cosine >= :data:`PROBE_MIN_COSINE`), so the app's own path, not a sibling of
it, is what passes. Standard library only (the lite bundle imports this), except
:func:`data_dir`, which asks platformdirs.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

PROBE_FLAG = "--mlfreeze-probe"
DATA_ENV = "MLFREEZE_DATA_DIR"
PROBE_MIN_COSINE = 0.9999
REQUEST_KEYS = {"texts": "text", "images": "image", "faces": "face"}

EmbedFn = Callable[[list[Any]], Any]


class ProbeRequestError(ValueError):
    """The probe request file is unreadable or malformed."""


def filter_known_warnings() -> None:
    """Hide third-party deprecation warnings a user cannot act on (app and self-test call this):
    insightface's calls into scikit-image's deprecated ``estimate`` (FutureWarning), and
    torch/timm/open_clip deprecation notices about their own internals."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(insightface|skimage|timm|open_clip)(\.|$)")
    warnings.filterwarnings("ignore", category=FutureWarning, message=r".*`estimate` is deprecated.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(insightface|skimage|timm|open_clip)(\.|$)")


def read_request(path: Path | str) -> dict[str, list[str]]:
    """The probe request as ``{"texts": [...], "images": [...], "faces": [...]}`` (absent keys: [])."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProbeRequestError(f"probe request {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ProbeRequestError(f"probe request {path} is not readable JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ProbeRequestError(f"probe request {path}: expected a JSON object with texts/images/faces")
    unknown = sorted(set(doc) - set(REQUEST_KEYS))
    if unknown:
        raise ProbeRequestError(f"probe request {path}: unknown key(s) {', '.join(unknown)} "
                                f"(known: {', '.join(REQUEST_KEYS)})")
    out: dict[str, list[str]] = {}
    for key in REQUEST_KEYS:
        value = doc.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ProbeRequestError(f"probe request {path}: {key} must be a list of strings")
        out[key] = value
    return out


def _rows(value: Any, n: int, part: str, *, nullable: bool) -> list[list[float] | None]:
    rows = list(value.tolist() if hasattr(value, "tolist") else value)
    if len(rows) != n:
        raise ValueError(f"{part}: {len(rows)} rows for {n} inputs")
    out: list[list[float] | None] = []
    for i, row in enumerate(rows):
        if row is None:
            if not nullable:
                raise ValueError(f"{part}[{i}] is null")
            out.append(None)
            continue
        vec = [float(x) for x in (row.tolist() if hasattr(row, "tolist") else row)]
        if not vec or not all(math.isfinite(x) for x in vec):
            raise ValueError(f"{part}[{i}] is empty or not finite")
        out.append(vec)
    return out


def answer_probe(request: Mapping[str, list[str]], *, embed_texts: EmbedFn | None = None,
                 embed_images: EmbedFn | None = None, embed_faces: EmbedFn | None = None) -> dict[str, Any]:
    """The probe response for ``request`` (see the module docstring); parts without a callable are left out."""
    response: dict[str, Any] = {}
    if embed_texts is not None:
        texts = list(request.get("texts", []))
        response["text"] = _rows(embed_texts(texts), len(texts), "text", nullable=False) if texts else []
    if embed_images is not None:
        images = [Path(p) for p in request.get("images", [])]
        response["image"] = _rows(embed_images(images), len(images), "image", nullable=False) if images else []
    if embed_faces is not None:
        faces = [Path(p) for p in request.get("faces", [])]
        response["face"] = _rows(embed_faces(faces), len(faces), "face", nullable=True) if faces else []
    return response


def probe_request_path(argv: Sequence[str]) -> str | None:
    """The REQUEST.json of ``--mlfreeze-probe REQUEST.json`` / ``--mlfreeze-probe=REQUEST.json`` in
    ``argv``, ``""`` when the flag has no value, None when the flag is absent."""
    for i, arg in enumerate(argv):
        if arg == PROBE_FLAG:
            return argv[i + 1] if i + 1 < len(argv) else ""
        if arg.startswith(PROBE_FLAG + "="):
            return arg.split("=", 1)[1]
    return None


def handle_probe(argv: Sequence[str], *, embed_texts: EmbedFn | None = None, embed_images: EmbedFn | None = None,
                 embed_faces: EmbedFn | None = None, prog: str | None = None,
                 out: TextIO | None = None, err: TextIO | None = None) -> int | None:
    """Answer ``--mlfreeze-probe REQUEST.json`` when ``argv`` holds it: print the response JSON and
    return the exit code (0 ok, 1 an embedding failed, 2 bad request); None when the flag is absent
    (the app goes on with its own argument parsing)."""
    path = probe_request_path(argv)
    if path is None:
        return None
    out = out or sys.stdout
    err = err or sys.stderr
    name = prog or Path(sys.argv[0]).name or "app"
    if not path:
        print(f"{name}: error: {PROBE_FLAG} needs a REQUEST.json path", file=err)
        return 2
    filter_known_warnings()
    try:
        request = read_request(path)
    except ProbeRequestError as exc:
        print(f"{name}: error: {exc}", file=err)
        return 2
    if embed_texts is None and embed_images is None and embed_faces is None:
        print(f"{name}: error: this app embeds nothing ({PROBE_FLAG} has no part to answer)", file=err)
        return 1
    from mlfreeze_runtime import names

    names.install()  # the app's by-name loads resolve to the probed models (a bundle's runtime hook did it already)
    try:
        response = answer_probe(request, embed_texts=embed_texts, embed_images=embed_images, embed_faces=embed_faces)
    except Exception as exc:  # the app's own failure: one line, exit 1
        first = (str(exc).splitlines() or [""])[0]
        print(f"{name}: error: probe failed: {type(exc).__name__}: {first}", file=err)
        return 1
    out.write(json.dumps(response) + "\n")
    out.flush()
    return 0


def data_dir(app_name: str | None = None) -> Path:
    """The folder where the app keeps its files (databases, indexes, thumbnails, logs), created on
    first use (absolute). ``app_name`` defaults to the running app's (:func:`running_app_name`).

    ``$MLFREEZE_DATA_DIR`` when set (the self-test points it at a temporary folder; a server in a
    container at its volume), else platformdirs' per-user data folder for the app
    (``~/.local/share/<app>`` on Linux, ``~/Library/Application Support/<app>`` on macOS,
    ``%LOCALAPPDATA%\\<app>`` on Windows; the XDG default where platformdirs is missing). Never
    inside the bundle, so an update (which replaces the bundle) keeps it. OSError when it cannot be
    made; ValueError for an empty or path-like ``app_name``."""
    import os

    name = app_name if app_name is not None else running_app_name()
    if not name or any(sep in name for sep in ("/", "\\")) or name in (".", ".."):
        raise ValueError(f"data_dir: app name {name!r} must be a plain name such as 'photo-search'")
    chosen = os.environ.get(DATA_ENV, "").strip()
    if chosen:
        path = Path(chosen).expanduser()
    else:
        try:
            import platformdirs
        except ImportError:  # a bundle built without platformdirs: the XDG default, which it also uses on Linux
            path = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / name
        else:
            path = Path(platformdirs.user_data_dir(name, appauthor=False))
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- --health ----
def device_info() -> dict[str, Any]:
    """:func:`mlfreeze_runtime.device.get_device_info`, or a CPU note where it cannot run."""
    try:
        from mlfreeze_runtime.device import get_device_info
    except ImportError as exc:  # pragma: no cover - the device module ships in every bundle
        return {"device": "cpu", "note": f"mlfreeze_runtime.device cannot be imported ({exc}); assuming cpu"}
    try:
        return dict(get_device_info())
    except Exception as exc:  # a broken driver must not break the health report
        return {"device": None, "error": f"{type(exc).__name__}: {exc}"}


def models_status(explicit: str | Path | None = None) -> dict[str, Any]:
    """``{"models_dir", "models_dir_source", "index" (ModelIndex or None), "models_error"}``."""
    from mlfreeze_runtime.modelindex import ModelIndexError, find_models_dir, read_models_index

    directory, source = find_models_dir(explicit)
    index, error = None, None
    if directory is None:
        error = ("models not found: MLFREEZE_MODELS_DIR is not set and this is not a frozen bundle: "
                 "set MLFREEZE_MODELS_DIR to a folder holding models.json")
    else:
        try:
            index = read_models_index(directory)
        except ModelIndexError as exc:
            error = str(exc)
    return {"models_dir": None if directory is None else str(directory), "models_dir_source": source,
            "index": index, "models_error": error}


def health(*, app: str, version: str, features: Mapping[str, Mapping[str, Any]] | None = None,
           ml_features: Sequence[str] | None = None, status: Mapping[str, Any] | None = None,
           extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``--health`` document (keys: module docstring).

    ``features``: ``{name: {"available": bool, "reason": str | None}}`` as the app judges them;
    ``ml_features`` names those that need the ML stack (default: every feature). Without
    ``features`` (a minimal app) ``ml_available`` means "models.json is readable and lists a model".
    ``status``: a :func:`models_status` result the app already computed.
    """
    st = dict(status) if status is not None else models_status()
    index = st["index"]
    if features is None:
        ok = index is not None and bool(index.models)
        reason = None if ok else (st["models_error"] or "models.json lists no model")
        features = {"models": {"available": ok, "reason": reason}}
    names = list(features) if ml_features is None else list(ml_features)
    ml_ok = any(bool(features[n]["available"]) for n in names if n in features)
    reasons = [f"{n}: {f['reason']}" for n, f in features.items() if not f["available"]]
    doc: dict[str, Any] = {
        "app": app,
        "version": version,
        "python": platform.python_version(),
        "frozen": bool(getattr(sys, "frozen", False)),
        "executable": sys.executable,
        "device": device_info(),
        "models_dir": st["models_dir"],
        "models_dir_source": st["models_dir_source"],
        "model_set": index.set_name if index is not None else None,
        "models": [m.describe() for m in index.models] if index is not None else [],
        "models_error": st["models_error"],
        "features": {n: dict(f) for n, f in features.items()},
        "ml_available": ml_ok,
        "ml_reason": "; ".join(reasons) or None,
    }
    doc.update(extra or {})
    return doc


DATA_DIR_ENV = DATA_ENV  # the name the windowed-app log hook uses


def running_app_name() -> str:
    """The running app's name: its executable's (a frozen bundle's ``<app>``) or script's file stem."""
    target = sys.executable if getattr(sys, "frozen", False) else (sys.argv[0] if sys.argv and sys.argv[0] else "")
    stem = Path(target).stem
    return stem or "mlfreeze-app"
