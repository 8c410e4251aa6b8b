"""A bundle's ``RECORD``: the sha256 and size of every file it ships (stdlib only).

The format is the wheel RECORD of the binary distribution format (PyPA specification
"Recording installed projects"), one CSV row per file, written with the ``csv`` module as
``wheel`` and ``pip`` write it::

    _internal/base_library.zip,sha256=<urlsafe base64 of the digest, no padding>,1234

Paths are POSIX, relative to the bundle root, sorted. RECORD lists every regular file (and
every symlink to a file, hashed through the link) except itself, ``BUILD-INFO.json`` (it holds
RECORD's own sha256, so it cannot be inside) and the incremental stamp ``.mlfreeze-stamp``.

The link rule (RECORD, the release archives, ``mlfreeze publish`` and the updater): a symlink is
allowed only when its target is relative and, resolved, lies inside the bundle and exists. It is
recorded by its target's bytes (a link to a folder is not a row: the folder's files are), listed
by :func:`links` (the update index carries them, and the updater installs them as links). A link
that is absolute, leaves the bundle or dangles is refused: :func:`write` raises RecordError and
:func:`verify` reports it (kind ``link``), so neither freeze, audit nor publish lets a bundle
carry the bytes of a file outside it.

Two ways to check a bundle against its RECORD:

* quick (:func:`verify` with ``full=False``): every recorded file exists with its recorded
  size, and a file whose mtime is newer than RECORD's is re-hashed; no unrecorded file exists.
  Catches truncation, deletion, additions and in-place edits that touch the mtime.
* full (``full=True``): every file is re-hashed.

The builder (freeze, audit, release, the incremental skip) and the bundle's own updater use
this module, so it imports nothing outside the standard library.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import posixpath
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

RECORD_NAME = "RECORD"
BUILD_INFO_NAME = "BUILD-INFO.json"
STAMP_NAME = ".mlfreeze-stamp"
NOT_RECORDED = frozenset({RECORD_NAME, BUILD_INFO_NAME, STAMP_NAME})  # at the bundle root only
_CHUNK = 1 << 20


class RecordError(ValueError):
    """RECORD is missing or malformed (the message names the file and the row)."""


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One RECORD row: ``path`` (POSIX, bundle-relative), ``sha256`` (hex) and ``size`` (bytes)."""

    path: str
    sha256: str
    size: int

    @property
    def hash_field(self) -> str:
        """``sha256=<urlsafe base64, no padding>`` as RECORD writes it."""
        return "sha256=" + b64_digest(bytes.fromhex(self.sha256))


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One difference between a bundle and its RECORD: ``kind`` is differ, missing, extra or link
    (a symlink that breaks the link rule)."""

    kind: str
    path: str
    detail: str

    def line(self) -> str:
        return f"{self.path}: {self.kind}: {self.detail}"


def b64_digest(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def link_problem(bundle: Path, rel: str, target: str) -> str | None:
    """Why the symlink ``rel`` -> ``target`` of ``bundle`` breaks the link rule (None when it is allowed)."""
    if not target or "\x00" in target or "\\" in target or posixpath.isabs(target) or os.path.isabs(target):
        return f"symlink to {target!r} points outside the bundle (absolute, or not a POSIX path)"
    lexical = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if lexical == ".." or lexical.startswith("../"):
        return f"symlink to {target!r} points outside the bundle"
    base = os.path.realpath(bundle)
    real = os.path.realpath(bundle / rel)
    if not real.startswith(base + os.sep):
        return f"symlink to {target!r} resolves to {real}, outside the bundle"
    if not os.path.exists(real):
        return f"symlink to {target!r} dangles"
    return None


def links(bundle: Path) -> list[tuple[str, str]]:
    """``(posix relpath, target)`` of every symlink in ``bundle`` (to files and to folders), sorted;
    RecordError naming the first one that breaks the link rule (:func:`link_problem`)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(bundle):
        here = Path(dirpath)
        rel_dir = here.relative_to(bundle).as_posix()
        for name in filenames + dirnames:
            path = here / name
            if not path.is_symlink():
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            target = os.readlink(path)
            why = link_problem(bundle, rel, target)
            if why is not None:
                raise RecordError(f"{path}: {why}; a bundle must not carry it (copy the file in or remove the link)")
            out.append((rel, target))
    return sorted(out)


def _walk(bundle: Path) -> Iterator[tuple[str, Path, str | None]]:
    """``(relpath, path, why)`` of every file RECORD covers; ``why`` is the link-rule problem of a
    symlink that breaks it (its target is then never read)."""
    for dirpath, dirnames, filenames in os.walk(bundle):
        here = Path(dirpath)
        rel_dir = here.relative_to(bundle).as_posix()
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            path = here / name
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in NOT_RECORDED:
                continue
            if path.is_symlink():
                why = link_problem(bundle, rel, os.readlink(path))
                if why is not None:
                    yield rel, path, why
                    continue
            if path.is_file():
                yield rel, path, None


def recorded_files(bundle: Path) -> Iterator[tuple[str, Path]]:
    """``(posix relpath, path)`` of every file RECORD covers, in no particular order.

    Symlinked folders are not followed (an archive keeps them as links); a symlink to a file
    inside the bundle is recorded by its target's bytes; RecordError for a symlink that breaks
    the link rule (absolute, outside the bundle, dangling).
    """
    for rel, path, why in _walk(bundle):
        if why is not None:
            raise RecordError(f"{path}: {why}; a bundle must not carry it (copy the file in or remove the link)")
        yield rel, path


Snapshot = dict[str, tuple[int, int]]  # relpath -> (size, mtime_ns)


def snapshot(bundle: Path) -> Snapshot:
    """Size and mtime of every file RECORD would cover (no hashing: cheap before and after a run)."""
    out = {}
    for rel, path in recorded_files(bundle):
        st = path.stat()
        out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What a run did to a bundle, one ``"<relpath> (new|changed|deleted)"`` each, sorted by path:
    a file written inside a bundle breaks its RECORD (and ``mlfreeze audit``)."""
    out = [f"{rel} (new)" for rel in after if rel not in before]
    out += [f"{rel} (changed)" for rel in after if rel in before and after[rel] != before[rel]]
    out += [f"{rel} (deleted)" for rel in before if rel not in after]
    return sorted(out)


def scan(bundle: Path) -> list[Entry]:
    """A fresh RECORD of ``bundle`` (every file hashed), sorted by path."""
    out = []
    for rel, path in recorded_files(bundle):
        digest, size = hash_file(path)
        out.append(Entry(path=rel, sha256=digest, size=size))
    return sorted(out, key=lambda e: e.path)


def render(entries: list[Entry]) -> str:
    """RECORD's text: one CSV row per entry, ``\\n`` line ends, sorted by path."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=",", quotechar='"', lineterminator="\n")
    for e in sorted(entries, key=lambda e: e.path):
        writer.writerow((e.path, e.hash_field, e.size))
    return buf.getvalue()


def write(bundle: Path) -> tuple[Path, str]:
    """Hash every file of ``bundle`` and write ``bundle/RECORD``; return (path, RECORD's sha256 hex)."""
    text = render(scan(bundle)).encode("utf-8")
    path = bundle / RECORD_NAME
    tmp = bundle / f".{RECORD_NAME}.tmp"
    tmp.write_bytes(text)
    os.replace(tmp, path)
    return path, hashlib.sha256(text).hexdigest()


def parse(text: str, where: str = RECORD_NAME) -> dict[str, Entry]:
    """``{path: Entry}`` from RECORD text; raises RecordError naming the row that is malformed."""
    out: dict[str, Entry] = {}
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row:
            continue
        if len(row) != 3:
            raise RecordError(f"{where}: row {n} has {len(row)} fields, expected path,hash,size")
        rel, hash_field, size = row
        algo, _, b64 = hash_field.partition("=")
        if algo != "sha256" or not b64:
            raise RecordError(f"{where}: row {n} ({rel}): hash {hash_field!r} is not sha256=<base64>")
        try:
            digest = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        except ValueError:
            raise RecordError(f"{where}: row {n} ({rel}): hash is not urlsafe base64") from None
        if len(digest) != 32 or not size.isdigit():
            raise RecordError(f"{where}: row {n} ({rel}): bad sha256 length or size {size!r}")
        if rel.startswith("/") or "\\" in rel or ".." in rel.split("/") or rel in out:
            raise RecordError(f"{where}: row {n}: path {rel!r} is absolute, not POSIX, escapes or repeats")
        out[rel] = Entry(path=rel, sha256=digest.hex(), size=int(size))
    return out


def read(bundle: Path) -> dict[str, Entry]:
    """The bundle's RECORD as ``{path: Entry}``; RecordError when it is missing or malformed."""
    path = bundle / RECORD_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError(f"{path}: missing (the bundle was not made by mlfreeze freeze, or RECORD was "
                          "deleted)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: unreadable ({exc})") from None
    return parse(text, str(path))


def digest_of(bundle: Path) -> str:
    """sha256 hex of the RECORD file's bytes (what BUILD-INFO's ``record.sha256`` holds)."""
    return hash_file(bundle / RECORD_NAME)[0]


def verify(bundle: Path, *, full: bool, record: Mapping[str, Entry] | None = None,
           hashes: dict[str, str] | None = None) -> list[Finding]:
    """Differences between ``bundle`` and its RECORD, sorted by path (empty: the bundle is intact).

    ``full``: re-hash every file; else compare sizes and re-hash only files modified after
    RECORD was written. ``hashes``, when given, receives ``{path: sha256 hex}`` of every file
    that was hashed (all of them with ``full``). Raises RecordError when RECORD itself is
    missing or malformed.
    """
    record = read(bundle) if record is None else record
    since = (bundle / RECORD_NAME).stat().st_mtime_ns
    found: list[Finding] = []
    present: dict[str, Path] = {}
    for rel, path, why in _walk(bundle):
        if why is None:
            present[rel] = path
        else:
            found.append(Finding(kind="link", path=rel, detail=f"{why}; refused"))
            record = {k: v for k, v in record.items() if k != rel}
    for rel, entry in record.items():
        found_path = present.pop(rel, None)
        if found_path is None:
            found.append(Finding(kind="missing", path=rel, detail=f"recorded ({entry.size} bytes), not in the bundle"))
            continue
        st = found_path.stat()
        if st.st_size != entry.size:
            found.append(Finding(kind="differ", path=rel, detail=f"size {st.st_size} bytes, recorded {entry.size}"))
            continue
        if full or st.st_mtime_ns > since or not stat.S_ISREG(st.st_mode):
            digest, _ = hash_file(found_path)
            if hashes is not None:
                hashes[rel] = digest
            if digest != entry.sha256:
                found.append(Finding(kind="differ", path=rel,
                                     detail=f"sha256 {digest[:16]}..., recorded {entry.sha256[:16]}..."))
    for rel, path in present.items():
        found.append(Finding(kind="extra", path=rel, detail=f"not in RECORD ({path.stat().st_size} bytes)"))
    return sorted(found, key=lambda f: (f.path, f.kind))
