"""Model packs: a model set published on its own and swapped in without reinstalling the app.

A pack is ``model-pack.json`` (signed as a TUF target next to ``index.json``, or a local file)
listing every file of a models folder (``models.json``, weights, goldens, probe inputs) as
``[path, sha256, size]``, with the bytes as blobs (``blobs/<aa>/<sha256>``). Installed packs lie
in ``<root>/models/<set>-<version>/`` with ``<root>/models/current`` pointing at the one in use;
the bundle's runtime hook prefers it over the bundle's own ``models/`` when the app runs from
``<root>/versions/<name>/``.

``install_pack``: fetch (hard-linking files the current models already have), run the
installed app's own ``<app>-selftest --models-dir <staged pack>`` (the new models must
reproduce their goldens through the app's code), rename into ``models/``, switch
``models/current``, run ``<app> --health`` with the new models, restore the previous models on
failure; the previous pack stays as the backup.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from mlfreeze_runtime import buildinfo, record
from mlfreeze_runtime.update import http, index, install, names, pointer
from mlfreeze_runtime.update.errors import FetchError, UsageError, VerificationFailed

PACK_NAME = "model-pack.json"
FORMAT = "mlfreeze-model-pack"
MODELS = "models"


def pack_document(models_dir: Path, *, app: str, set_name: str, version: str) -> tuple[bytes, list[tuple[str, str]]]:
    """(``model-pack.json`` bytes, [(path, sha256)]) for every file under ``models_dir``."""
    rows = []
    for path in sorted(p for p in models_dir.rglob("*") if p.is_file()):
        digest, size = record.hash_file(path)
        rows.append((path.relative_to(models_dir).as_posix(), digest, size))
    doc = {"format": FORMAT, "schema_version": 1, "app": app, "set": set_name, "version": version, "files": rows}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode(), [(r[0], r[1]) for r in rows]


def parse_pack(data: bytes, where: str) -> dict[str, Any]:
    doc = index.load_document(data, where, FORMAT, "an mlfreeze model pack")
    for key in ("app", "set", "version"):
        names.check_name(doc.get(key), f"model pack {key}", where)
    files = doc.get("files")
    if not isinstance(files, list):
        raise FetchError(f"{where}: the pack has no file list; it is damaged")
    seen: set[str] = set()
    for row in files:
        if not isinstance(row, list) or len(row) != 3:
            raise FetchError(f"{where}: file row {row!r} is not [path, sha256, size]")
        rel, sha, size = row
        names.check_relpath(rel, "path", where)
        names.check_sha256(sha, f"{rel}: sha256", where)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or rel.casefold() in seen:
            raise FetchError(f"{where}: {rel}: size {size!r} is not a byte count, or the path repeats")
        seen.add(rel.casefold())
    if not any(r[0] == "models.json" for r in doc["files"]):
        raise FetchError(f"{where}: the pack has no models.json")
    return doc


def load_pack(source: str, root: Path, trust_file: Path | None) -> tuple[dict[str, Any], str]:
    """(pack document, base for its blobs) from a signed repository, a release directory or a
    ``model-pack.json`` file; an unsigned URL is refused."""
    from mlfreeze_runtime.update import trust

    if http.is_local(source) and http.local_path(source).is_file():
        path = http.local_path(source)
        return parse_pack(path.read_bytes(), str(path)), str(path.parent)
    install.ensure_fetchable(source)
    if trust.has_metadata(source):
        cur = install.current_bundle(root)
        data = trust.refresh_index(source, root, trust_root=trust.trust_root_for(trust_file, trust.bundled_root(cur)),
                                   target=PACK_NAME)
        return parse_pack(data, http.join(source, PACK_NAME)), source
    if http.is_local(source):
        where = http.join(source, PACK_NAME)
        return parse_pack(http.fetch_bytes(where), where), source
    raise FetchError(f"{source}: no signed metadata; remote model packs must be signed: refused")


def models_pointer(root: Path) -> pointer.SymlinkPointer:
    return pointer.SymlinkPointer(root / MODELS, folder=".")


def current_models(root: Path) -> Path:
    """The models folder the installed app uses: ``models/current`` when set, else the bundle's."""
    name = models_pointer(root).read()
    return root / MODELS / name if name else install.current_bundle(root) / MODELS


def _reusable(models_dir: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in (p for p in models_dir.rglob("*") if p.is_file()) if models_dir.is_dir() else ():
        out.setdefault(_sha(path), path)
    return out


def _sha(path: Path) -> str:
    return record.hash_file(path)[0]


PENDING = "models_pending"  # state.json: a pack switched in whose health check has not passed yet


def _set_pending(root: Path, value: dict[str, Any] | None) -> None:
    state = install.read_state(root)
    if value is None:
        state.pop(PENDING, None)
    else:
        state[PENDING] = value
    install.write_state(root, state)


def _health(root: Path, bundle: Path, name: str, previous: str | None) -> None:
    """``<app> --health`` with ``models/current``; on failure restore ``previous`` (or the bundle's
    models), delete ``name`` and raise VerificationFailed (exit 1)."""
    ptr = models_pointer(root)
    try:
        os.environ["MLFREEZE_MODELS_DIR"] = str(root / MODELS / "current")
        install.run_check(install.health_command(bundle), f"model pack {name}: health check with the new models "
                          "failed", json_out=True)
    except VerificationFailed as exc:
        if previous and (root / MODELS / previous).is_dir():
            ptr.switch(previous)
        else:
            ptr.path.unlink(missing_ok=True)
        shutil.rmtree(names.inside(root, root / MODELS / name), ignore_errors=True)
        _set_pending(root, None)
        raise VerificationFailed(exc.message + f"; restored {previous or 'the bundle models'}") from None
    finally:
        os.environ.pop("MLFREEZE_MODELS_DIR", None)


def finish_pending(root: Path, progress: Any = lambda s: None) -> str | None:
    """Finish the health check of a model pack a killed run switched in but never checked: mark
    it, or restore the previous models (VerificationFailed, exit 1). The pack's name, or None."""
    pending = install.read_state(root).get(PENDING)
    if not isinstance(pending, dict):
        return None
    name, previous = pending.get("name"), pending.get("previous")
    if not isinstance(name, str) or models_pointer(root).read() != name or names.name_problem(name):
        _set_pending(root, None)
        return None
    progress(f"model pack {name}: switched in but never health-checked (an earlier run stopped); checking it now")
    _health(root, install.current_bundle(root), name, previous if isinstance(previous, str) else None)
    _set_pending(root, None)
    return name


def install_pack(root: Path, base: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Verify, self-test, switch and health-check a model pack; VerificationFailed (exit 1) keeps
    the models in use, FetchError (exit 3) for bytes that are not the signed ones."""
    bundle = install.current_bundle(root)
    info = buildinfo.read(bundle)
    if info["flavor"] == "lite":
        raise UsageError(f"{bundle.name} is a lite install: it has no models to update")
    name = names.check_name(f"{doc['set']}-{doc['version']}", "model pack", base)
    (root / MODELS).mkdir(exist_ok=True)
    staging = names.inside(root, root / install.STAGING / f"models-{name}.{os.getpid()}")
    staging.mkdir(parents=True)
    have = _reusable(current_models(root))
    fetched = reused = 0
    try:
        for rel, sha, size in doc["files"]:
            dest = names.inside(staging, staging / rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if sha in have:
                install._link_or_copy(have[sha], dest)
                reused += 1
            else:
                http.fetch_file(http.join(base, index.blob_path(sha)), dest, sha256=sha, size=int(size))
                fetched += 1
        extra = {p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()} - \
            {r[0] for r in doc["files"]}
        if extra:
            raise VerificationFailed(f"model pack {name}: unlisted files {sorted(extra)}")
        install.kill_point("models-staged")
        selftest = bundle / install.exe_name(info["app"], "windows" if os.name == "nt" else "posix", "-selftest")
        install.run_check([str(selftest), "--models-dir", str(staging)],
                          f"model pack {name}: the installed app's self-test failed on the new models; "
                          "the models in use are kept", json_out=False)
        target = names.inside(root, root / MODELS / name)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    ptr = models_pointer(root)
    previous = ptr.read()
    _set_pending(root, {"name": name, "previous": previous})  # the marker a killed run leaves
    ptr.switch(name)
    install.kill_point("models-switched")
    _health(root, bundle, name, previous)
    _set_pending(root, None)
    for old in (p for p in (root / MODELS).iterdir() if p.is_dir() and not p.is_symlink()):
        if old.name not in (name, previous):  # keep the new pack and the previous one as the backup
            shutil.rmtree(old, ignore_errors=True)
    return {"models": name, "previous": previous, "fetched_files": fetched, "reused_files": reused,
            "sha256": hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()}
