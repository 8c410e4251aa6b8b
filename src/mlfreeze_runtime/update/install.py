"""Verified side-by-side install under a root, atomic switch, health check, rollback, keep N.

Layout of an install root::

    versions/<version>-<platform>-<flavor>/   complete, audited versions (only ever renamed in)
    .staging/<name>.<pid>/                    a version being assembled (removed on the next run)
    .downloads/<sha256>[.part]                blobs fetched for the install in progress (resumable)
    .downloads/packs/<name>                   a small pack fetched whole (server without Range support)
    current -> versions/<name>                the pointer (``pointer`` module; current.txt on Windows)
    state.json                                history of switches, kept count, source, reasons,
                                              and "accepted": the versions whose post-switch
                                              health check passed (the acceptance marker)

Invariant: ``current`` only ever names a folder in ``versions/``, and a folder enters
``versions/`` only by one rename after its RECORD audit and acceptance check passed; the
pointer is switched by an atomic rename. So a SIGKILL at any moment leaves ``current`` on a
complete, audited version, and :func:`clean_leftovers` removes the rest on the next run.

Acceptance is a recorded fact: a version is "installed" only once its health check after the
switch passed and :func:`mark_accepted` wrote it into ``state.json``. A run that finds ``current``
switched but not accepted (the previous run was killed between the switch and the check) finishes
the check first (:func:`finish_pending`) and rolls back on failure.

Names from the index are checked when it is read (``index.parse``); every join of such a name
that writes or deletes is checked again on the resolved path (``names.inside``). ``.downloads``
holds only blobs of the variant being installed (anything else is removed when staging starts),
is kept after a network failure so the next run resumes, and is removed after a successful
install and after a failure to write (disk full): a failed run never leaves more than the
variant's own bytes there.

``MLFREEZE_UPDATE_KILL_AT=<step>`` makes the process SIGKILL itself at that step (tests):
download, staged, audited, accepted, moved, switched, recorded, checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlfreeze_runtime import buildinfo, record
from mlfreeze_runtime.update import http, index, names, pointer, proc
from mlfreeze_runtime.update.errors import FetchError, UsageError, VerificationFailed

STATE = "state.json"
ACCEPTED = "accepted"  # state.json key: versions whose post-switch health check passed
STAGING = ".staging"
DOWNLOADS = ".downloads"
DEFAULT_KEEP = 2
KILL_ENV = "MLFREEZE_UPDATE_KILL_AT"
CHECK_TIMEOUT = 300.0
WHOLE_PACK_ENV = "MLFREEZE_PACK_WHOLE_MAX"
WHOLE_PACK_MAX = 64 << 20
"""Largest pack (bytes) fetched whole when a server ignores Range; a bigger one is refused."""
RUN_MAX = 64 << 20
"""Largest run of adjacent blobs fetched with one Range request (and held twice on disk while split)."""


def kill_point(step: str) -> None:
    """SIGKILL this process when MLFREEZE_UPDATE_KILL_AT names ``step`` (test hook)."""
    if os.environ.get(KILL_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(kw_only=True)
class Outcome:
    """What an install/update did: the version now current, bytes fetched, files reused, timings (s)."""

    name: str
    previous: str | None
    downloaded_bytes: int = 0
    requests: int = 0
    reused_files: int = 0
    fetched_files: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    note: str = ""


# --- state ------------------------------------------------------------------------------------

def read_state(root: Path) -> dict[str, Any]:
    try:
        doc = json.loads((root / STATE).read_text(encoding="utf-8"))
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def write_state(root: Path, state: dict[str, Any]) -> None:
    tmp = root / f".{STATE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, root / STATE)


def installed(root: Path) -> list[str]:
    d = root / pointer.VERSIONS
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def history(root: Path) -> list[str]:
    """Versions in the order they became current, oldest first, restricted to those installed,
    with the pointer's target last (reconciles a state.json a kill left one step behind)."""
    present = set(installed(root))
    hist = [n for n in read_state(root).get("history", []) if n in present]
    cur = pointer.for_root(root).read()
    if cur is not None and (not hist or hist[-1] != cur):
        hist = [n for n in hist if n != cur] + [cur]
    return hist


def accepted(root: Path) -> set[str]:
    """Versions whose health check after the switch passed (state.json's acceptance marker)."""
    names_ = read_state(root).get(ACCEPTED, [])
    return {n for n in names_ if isinstance(n, str)} if isinstance(names_, list) else set()


def mark_accepted(root: Path, name: str) -> None:
    """Record that ``name`` passed its health check after the switch (forgets removed versions)."""
    state = read_state(root)
    present = set(installed(root))
    state[ACCEPTED] = sorted((accepted(root) & present) | {name})
    write_state(root, state)


def version_dir(root: Path, name: str) -> Path:
    """``root/versions/<name>`` for a checked name, resolved inside ``root`` (FetchError else)."""
    names.check_name(name, "version folder", str(root))
    return names.inside(root, root / pointer.VERSIONS / name)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """One updater per root at a time (fcntl lock on ``.lock``; UsageError when held)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as f:
        try:
            import fcntl
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # Windows: msvcrt.locking would go here; one updater is assumed
            pass
        except OSError:
            raise UsageError(f"{root}: another <app>-update is running on this root; wait for it") from None
        yield


def clean_leftovers(root: Path) -> list[str]:
    """Remove what a killed run left (staging folders, temp pointers and state); return their names."""
    removed = []
    staging = root / STAGING
    if staging.is_dir():
        for p in staging.iterdir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(f"{STAGING}/{p.name}")
    ptr = pointer.for_root(root)
    for p in ptr.leftovers() + sorted(root.glob(f".{STATE}.*.tmp")) + sorted(root.glob("models/.current.*.tmp")):
        p.unlink(missing_ok=True)
        removed.append(p.name)
    cur = ptr.read()
    for name in installed(root):  # a version folder with no RECORD cannot have been renamed in whole
        if name != cur and not (root / pointer.VERSIONS / name / record.RECORD_NAME).is_file():
            shutil.rmtree(root / pointer.VERSIONS / name, ignore_errors=True)
            removed.append(f"{pointer.VERSIONS}/{name}")
    return removed


# --- checks -----------------------------------------------------------------------------------

def exe_name(app: str, os_name: str, suffix: str = "") -> str:
    return f"{app}{suffix}" + (".exe" if os_name == "windows" else "")


def acceptance_command(bundle: Path) -> list[str]:
    """The check a version must pass before it may become current: ``<app>-selftest`` for
    full and slim (models must reproduce their goldens), ``<app> --health`` for lite."""
    info = buildinfo.read(bundle)
    os_name = "windows" if os.name == "nt" else "posix"
    app = _app(bundle, info)
    if info["flavor"] == "lite":
        return [str(bundle / exe_name(app, os_name)), "--health"]
    return [str(bundle / exe_name(app, os_name, "-selftest")), "--models-dir", str(bundle / "models")]


def health_command(bundle: Path) -> list[str]:
    info = buildinfo.read(bundle)
    return [str(bundle / exe_name(_app(bundle, info), "windows" if os.name == "nt" else "posix")), "--health"]


def _app(bundle: Path, info: dict[str, Any]) -> str:
    """The app name BUILD-INFO gives, checked as a name (it names the executable a check starts)."""
    return names.check_name(info.get("app"), "BUILD-INFO app", str(bundle / buildinfo.FILE_NAME))


def run_check(cmd: list[str], what: str, *, json_out: bool) -> None:
    """VerificationFailed naming ``what`` unless ``cmd`` exits 0 (and prints a JSON object)."""
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    done = proc.run(cmd, timeout=CHECK_TIMEOUT, env=env, cwd=str(Path(cmd[0]).parent))
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [""])[-1]
        raise VerificationFailed(f"{what}: {Path(cmd[0]).name} exited {done.returncode} ({tail})")
    if json_out and health_document(done.stdout) is None:
        raise VerificationFailed(f"{what}: {Path(cmd[0]).name} --health printed no JSON object")


def health_document(stdout: str) -> dict | None:
    """The JSON object an app's ``--health`` printed: the whole output (indented or not), else its
    last line (after other output); None when neither is a JSON object."""
    text = stdout.strip()
    for candidate in (text, (text.splitlines() or [""])[-1]):
        try:
            doc = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    return None


def audit(bundle: Path, *, record_sha256: str | None, full: bool) -> None:
    """VerificationFailed unless ``bundle`` matches its RECORD and RECORD is the signed one."""
    try:
        if record_sha256 is not None and record.digest_of(bundle) != record_sha256:
            raise VerificationFailed(f"{bundle.name}: RECORD is not the one the release signed; refused")
        info = buildinfo.read(bundle)
        if info["record"]["sha256"] != record.digest_of(bundle):
            raise VerificationFailed(f"{bundle.name}: BUILD-INFO names another RECORD; refused")
        found = record.verify(bundle, full=full)
    except (record.RecordError, buildinfo.BuildInfoError, OSError) as exc:
        raise VerificationFailed(f"{bundle.name}: cannot audit ({exc})") from None
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        raise VerificationFailed(f"{bundle.name}: audit against RECORD failed: {found[0].line()}{more}")


# --- staging ------------------------------------------------------------------------------------

def reusable(root: Path) -> dict[str, Path]:
    """``{sha256: path}`` of files installed versions hold, from their RECORDs (checked by size)."""
    out: dict[str, Path] = {}
    for name in installed(root):
        bundle = root / pointer.VERSIONS / name
        try:
            entries = record.read(bundle)
        except record.RecordError:
            continue
        for rel, e in entries.items():
            p = bundle / rel
            if e.sha256 not in out and p.is_file() and not p.is_symlink():
                out[e.sha256] = p
    return out


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def stage(root: Path, base: str, entry: dict[str, Any], outcome: Outcome,
          progress: Callable[[str], None] = lambda s: None, *,
          locations: dict[str, index.PackLocation] | None = None) -> Path:
    """Assemble ``entry``'s files under ``.staging/``: hard links to identical installed files,
    the rest fetched (resumably) into ``.downloads/`` then linked in: as loose blobs, or as byte
    ranges of packs for blobs ``locations`` (``index.locations``) places. Returns the staging folder."""
    name = names.check_name(entry["name"], "variant name", base)
    staging = names.inside(root, root / STAGING / f"{name}.{os.getpid()}")
    staging.mkdir(parents=True)
    downloads = root / DOWNLOADS
    downloads.mkdir(exist_ok=True)
    trim_downloads(downloads, entry, locations or {})
    try:
        return _fill(staging, root, base, entry, outcome, progress, locations or {})
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def trim_downloads(downloads: Path, entry: dict[str, Any], locations: dict[str, index.PackLocation]) -> list[str]:
    """Remove from ``.downloads`` whatever ``entry`` does not need (blobs and packs of another
    release a failed run left), so it never holds more than this variant's bytes; their names."""
    keep = {r.sha256 for r in index.files_of(entry)}
    packs = {loc.pack for sha, loc in locations.items() if sha in keep}
    removed = []
    for p in sorted(downloads.iterdir()):
        stem = p.name.removesuffix(".part")
        if p.is_dir() and p.name == index.PACKS_DIR:
            for q in sorted(p.iterdir()):
                if q.name.removesuffix(".part") not in packs:
                    q.unlink(missing_ok=True)
                    removed.append(f"{index.PACKS_DIR}/{q.name}")
            continue
        if stem in keep or (stem.startswith("run-") and packs):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p.name)
    return removed


def drop_downloads(root: Path) -> None:
    """Remove ``.downloads`` whole (after a failure to write: its bytes must not keep the disk full)."""
    shutil.rmtree(root / DOWNLOADS, ignore_errors=True)


def whole_pack_max() -> int:
    """``$MLFREEZE_PACK_WHOLE_MAX`` (bytes), else :data:`WHOLE_PACK_MAX`."""
    raw = os.environ.get(WHOLE_PACK_ENV, "").strip()
    if not raw:
        return WHOLE_PACK_MAX
    if not raw.isdigit():
        raise UsageError(f"{WHOLE_PACK_ENV}={raw!r}: a byte count (digits only); fix or unset it")
    return int(raw)


def fetch_blob(base: str, row: index.FileRow, dest: Path, loc: index.PackLocation | None, downloads: Path) -> None:
    """``row``'s bytes into ``dest``, checked: a loose blob, or its byte range of a pack
    (:func:`fetch_pack_range`)."""
    if row.size == 0:
        if row.sha256 != index.EMPTY_SHA256:
            raise FetchError(f"{row.path}: 0 bytes with sha256 {row.sha256[:16]}...; the index is damaged")
        dest.write_bytes(b"")
        return
    if loc is None:
        http.fetch_file(http.join(base, index.blob_path(row.sha256)), dest, sha256=row.sha256, size=row.size)
        return
    fetch_pack_range(base, loc, dest, offset=loc.offset, size=row.size, sha256=row.sha256, downloads=downloads)


def fetch_pack_range(base: str, loc: index.PackLocation, dest: Path, *, offset: int, size: int, sha256: str | None,
                     downloads: Path) -> None:
    """Bytes ``offset`` .. ``offset + size - 1`` of ``loc``'s pack into ``dest`` (checked against
    ``sha256`` unless None). When the server ignores Range, a pack up to :func:`whole_pack_max`
    bytes is fetched whole once (checked against its own sha256) and sliced here; a bigger one is
    refused (FetchError, exit 3)."""
    src = loc.url or http.join(base, index.pack_path(loc.pack))
    whole = downloads / index.PACKS_DIR / loc.pack
    kw: dict[str, Any] = {"offset": offset, "sha256": sha256, "size": size, "total": loc.pack_size}
    if whole.is_file():
        http.fetch_range(str(whole), dest, count=False, **kw)
        return
    try:
        http.fetch_range(src, dest, **kw)
    except http.RangeIgnored:
        limit = whole_pack_max()
        if loc.pack_size > limit:
            raise FetchError(f"{src}: the server ignores Range requests and would send the whole {loc.pack_size}-byte "
                             f"pack for {size} bytes of it; serve the release from a host that honours Range "
                             f"(GitHub releases, S3, nginx) or raise {WHOLE_PACK_ENV} (now {limit} bytes)") from None
        whole.parent.mkdir(exist_ok=True)
        http.fetch_file(src, whole, sha256=loc.pack_sha256, size=loc.pack_size)
        http.fetch_range(str(whole), dest, count=False, **kw)


def runs(rows: list[index.FileRow], locations: dict[str, index.PackLocation],
         limit: int = RUN_MAX) -> list[list[index.FileRow]]:
    """``rows`` (distinct blobs of size > 0 with a pack location) grouped into runs that lie back
    to back in one pack, each at most ``limit`` bytes (a longer blob is a run of its own), in pack
    and offset order: one Range request per run instead of one per file."""
    ordered = sorted(rows, key=lambda r: (locations[r.sha256].pack, locations[r.sha256].offset))
    out: list[list[index.FileRow]] = []
    for row in ordered:
        loc = locations[row.sha256]
        if out:
            prev = locations[out[-1][-1].sha256]
            start = locations[out[-1][0].sha256].offset
            if prev.pack == loc.pack and prev.offset + prev.length == loc.offset \
                    and loc.offset + loc.length - start <= limit:
                out[-1].append(row)
                continue
        out.append([row])
    return out


def _fetch_runs(base: str, rows: list[index.FileRow], locations: dict[str, index.PackLocation],
                downloads: Path) -> None:
    """Fetch every run of two or more adjacent blobs with one request into ``.downloads/``, then
    split it into ``.downloads/<sha256>`` files, each checked; single blobs are left to the caller."""
    todo: dict[str, index.FileRow] = {}
    for row in rows:
        if row.size and row.sha256 in locations and not (downloads / row.sha256).exists():
            todo.setdefault(row.sha256, row)
    for run in runs(list(todo.values()), locations):
        if len(run) < 2:
            continue
        first = locations[run[0].sha256]
        length = sum(r.size for r in run)
        run_file = downloads / f"run-{first.pack[:16]}-{first.offset}"
        fetch_pack_range(base, first, run_file, offset=first.offset, size=length, sha256=None, downloads=downloads)
        for row in run:
            http.fetch_range(str(run_file), downloads / row.sha256, offset=locations[row.sha256].offset - first.offset,
                             sha256=row.sha256, size=row.size, total=length, count=False)
        run_file.unlink()
        kill_point("download")


def _fill(staging: Path, root: Path, base: str, entry: dict[str, Any], outcome: Outcome,
          progress: Callable[[str], None], locations: dict[str, index.PackLocation]) -> Path:
    downloads = root / DOWNLOADS
    have = reusable(root)
    links = index.links_of(entry) if os.name != "nt" else {}  # Windows: file links stay copies
    rows = index.files_of(entry)
    started, requests = http.COUNTER.bytes, http.COUNTER.requests
    _fetch_runs(base, [r for r in rows if r.sha256 not in have or r.path in (record.RECORD_NAME,
                                                                             record.BUILD_INFO_NAME)],
                locations, downloads)
    for row in rows:
        if row.path in links:
            continue  # made below, as a link
        dest = names.inside(staging, staging / row.path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        names.inside(staging, dest)
        src = have.get(row.sha256)
        if src is not None and row.path not in (record.RECORD_NAME, record.BUILD_INFO_NAME):
            _link_or_copy(src, dest)
            outcome.reused_files += 1
            continue
        blob = downloads / names.check_sha256(row.sha256, f"{row.path}: sha256", base)
        if not blob.exists():
            fetch_blob(base, row, blob, locations.get(row.sha256), downloads)
            kill_point("download")
        _link_or_copy(blob, dest)
        os.chmod(dest, row.mode)
        outcome.fetched_files += 1
    make_links(staging, links)
    outcome.downloaded_bytes += http.COUNTER.bytes - started
    outcome.requests += http.COUNTER.requests - requests
    progress(f"staged {len(rows)} files: {outcome.reused_files} reused, {outcome.fetched_files} fetched "
             f"({outcome.downloaded_bytes} bytes)")
    kill_point("staged")
    return staging


def make_links(folder: Path, links: dict[str, str]) -> None:
    """Create ``links`` (``{path: relative target}``, checked by ``index.check_entry``) in
    ``folder``; FetchError (exit 3) when one resolves outside ``folder`` or to nothing."""
    for rel, target in sorted(links.items()):
        dest = names.inside(folder, folder / rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        names.inside(folder, dest.parent)
        os.symlink(target, dest)
    for rel in links:
        dest = names.inside(folder, folder / rel)
        if not dest.exists():
            raise FetchError(f"{rel}: link to {links[rel]!r} dangles in the release; damaged: not installed")


# --- the operations ---------------------------------------------------------------------------------

def switch(root: Path, name: str) -> None:
    pointer.for_root(root).switch(name)


def _record_switch(root: Path, name: str, **extra: Any) -> None:
    state = read_state(root)
    hist = [n for n in history(root) if n != name] + [name]
    state.update(extra)
    state["history"] = hist
    write_state(root, state)


def prune(root: Path, keep: int) -> list[str]:
    """Delete installed versions beyond ``current`` + ``keep`` previous ones (by history)."""
    hist = history(root)
    cur = pointer.for_root(root).read()
    keep_names = set(hist[-(keep + 1):]) | ({cur} if cur else set())
    removed = []
    for name in installed(root):
        if name not in keep_names:
            shutil.rmtree(root / pointer.VERSIONS / name, ignore_errors=True)
            removed.append(name)
    return removed


def install_entry(root: Path, base: str, entry: dict[str, Any], *, keep: int = DEFAULT_KEEP,
                  reasons: list[str] | None = None, source: str | None = None,
                  progress: Callable[[str], None] = lambda s: None,
                  locations: dict[str, index.PackLocation] | None = None) -> Outcome:
    """Stage, audit, accept, rename into ``versions/``, switch, health-check (rolling back on
    failure), mark accepted, prune. VerificationFailed (exit 1) or FetchError (exit 3) leave
    ``current`` as it was."""
    cur = pointer.for_root(root).read()
    name = names.check_name(entry["name"], "variant name", base)
    out = Outcome(name=name, previous=cur)
    target = version_dir(root, name)
    t0 = time.monotonic()
    if target.is_dir():
        audit(target, record_sha256=entry["record_sha256"], full=False)
        out.note = "already installed" if name in accepted(root) else "installed before, health check pending"
    else:
        staging = stage(root, base, entry, out, progress, locations=locations)
        t_dl = time.monotonic()
        out.seconds["download"] = t_dl - t0
        try:
            try:
                audit(staging, record_sha256=entry["record_sha256"], full=True)
            except VerificationFailed as exc:
                raise VerificationFailed(f"{exc.message}; the release is damaged, nothing was switched") from None
            kill_point("audited")
            run_check(acceptance_command(staging), f"{name}: acceptance check failed, not installed",
                      json_out=buildinfo.read(staging)["flavor"] == "lite")
            kill_point("accepted")
            target.parent.mkdir(exist_ok=True)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        kill_point("moved")
        out.seconds["download_to_switch"] = time.monotonic() - t_dl
    if cur != name:
        switch(root, name)
        kill_point("switched")
        _record_switch(root, name, source=source or read_state(root).get("source"),
                       reasons=reasons or [], keep=keep)
        kill_point("recorded")
    if name not in accepted(root):
        try:
            run_check(health_command(target), f"{name}: health check after the switch failed", json_out=True)
        except VerificationFailed as exc:
            previous = cur if cur != name else _previous(root, name)
            raise VerificationFailed(exc.message + undo_switch(root, name, previous)) from None
        kill_point("checked")
        mark_accepted(root, name)
    prune(root, keep)
    shutil.rmtree(root / DOWNLOADS, ignore_errors=True)
    out.seconds["total"] = time.monotonic() - t0
    return out


def _previous(root: Path, name: str) -> str | None:
    """The version current before ``name`` (by history), None when there was none."""
    hist = [n for n in history(root) if n != name]
    return hist[-1] if hist else None


def undo_switch(root: Path, failed: str, previous: str | None) -> str:
    """Switch back to ``previous`` (or remove the pointer when there is none), delete ``failed``;
    the phrase that says so."""
    ptr = pointer.for_root(root)
    if previous is not None and (root / pointer.VERSIONS / previous).is_dir():
        switch(root, previous)
        _record_switch(root, previous)
        back = f"; rolled back to {previous}"
    else:
        ptr.path.unlink(missing_ok=True)
        state = read_state(root)
        state["history"] = [n for n in state.get("history", []) if n != failed]
        write_state(root, state)
        back = "; nothing to roll back to, removed it"
    shutil.rmtree(version_dir(root, failed), ignore_errors=True)
    return back


def finish_pending(root: Path, progress: Callable[[str], None] = lambda s: None) -> str | None:
    """Finish what a run killed between the switch and the health check left undone: health-check
    the ``current`` version if it was never accepted, mark it, or roll back (VerificationFailed,
    exit 1). Returns the name checked, None when there was nothing to finish."""
    cur = pointer.for_root(root).read()
    if cur is None or cur in accepted(root):
        return None
    target = version_dir(root, cur)
    progress(f"{cur}: current but never health-checked after its switch (an earlier run stopped); checking it now")
    try:
        run_check(health_command(target), f"{cur}: health check after the switch failed", json_out=True)
    except VerificationFailed as exc:
        raise VerificationFailed(exc.message + " (the check an interrupted run left undone)"
                                 + undo_switch(root, cur, _previous(root, cur))) from None
    mark_accepted(root, cur)
    return cur


def rollback(root: Path) -> tuple[str, str]:
    """Switch ``current`` back to the previous version (quick RECORD audit first); (from, to)."""
    hist = history(root)
    if len(hist) < 2:
        raise UsageError(f"{root}: no previous version to roll back to (installed: "
                         f"{', '.join(installed(root)) or 'none'})")
    cur, prev = hist[-1], hist[-2]
    audit(version_dir(root, prev), record_sha256=None, full=False)
    switch(root, prev)
    state = read_state(root)
    state["history"] = hist[:-1]
    state.setdefault("rolled_back", []).append(cur)
    write_state(root, state)
    return cur, prev


def current_bundle(root: Path) -> Path:
    name = pointer.for_root(root).read()
    if name is None:
        raise UsageError(f"{root}: nothing installed (no current version); run <app>-update install --from URL")
    return root / pointer.VERSIONS / name


def ensure_fetchable(base: str) -> None:
    if not http.is_local(base):
        http.check_url(base)
    elif not http.local_path(base).exists():
        raise FetchError(f"{base}: no such release directory")
