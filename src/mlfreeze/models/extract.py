"""Safe zip extraction: only the declared members, each checked while it is written.

Refused (IntegrityError, exit 3), for every member of the archive whether declared or not:
absolute names, drive letters, backslashes, ``..`` components, symlinks and other
non-regular entries, encrypted entries, duplicate names. For the declared members that are
extracted: a member larger than its declared size, a total beyond the artifact's
``unpack_limit``, a sha256 other than the declared one, a missing member, a bad CRC.
Bytes are counted as they are decompressed; zip headers are never trusted for sizes.
Undeclared members are checked for safety and otherwise ignored (not extracted).
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from mlfreeze.errors import DownloadError, IntegrityError
from mlfreeze.models.manifest import ArtifactSpec

_CHUNK = 1 << 20


def _unsafe(name: str) -> str | None:
    if not name:
        return "an empty name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if "\\" in name:
        return "a backslash"
    if ".." in PurePosixPath(name).parts:
        return "a '..' component"
    return None


def check_members(zf: zipfile.ZipFile, archive_name: str) -> dict[str, zipfile.ZipInfo]:
    """Every entry of the archive, refusing the hostile ones; name -> info for regular files."""
    regular: dict[str, zipfile.ZipInfo] = {}
    seen: set[str] = set()
    for info in zf.infolist():
        name = info.filename
        why = _unsafe(name)
        if why:
            raise IntegrityError(f"{archive_name}: refused member {name!r}: {why}")
        if name in seen:
            raise IntegrityError(f"{archive_name}: refused member {name!r}: it appears twice")
        seen.add(name)
        mode = info.external_attr >> 16
        if mode and stat.S_ISLNK(mode):
            raise IntegrityError(f"{archive_name}: refused member {name!r}: a symbolic link")
        if info.flag_bits & 0x1:
            raise IntegrityError(f"{archive_name}: refused member {name!r}: encrypted")
        if info.is_dir():
            continue
        if stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # zips often leave the type bits 0
            raise IntegrityError(f"{archive_name}: refused member {name!r}: not a regular file")
        regular[name] = info
    return regular


def extract(archive: Path, dest: Path, art: ArtifactSpec) -> dict[str, dict[str, object]]:
    """Extract ``art``'s declared members of ``archive`` into ``dest``; return {name: {size, sha256}}."""
    limit = art.unpack_limit
    total = 0
    index: dict[str, dict[str, object]] = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = check_members(zf, art.file)
            missing = [m.name for m in art.members if m.name not in infos]
            if missing:
                raise IntegrityError(f"{art.file}: declared member {missing[0]!r} is not in the archive")
            needed = min(limit, sum(infos[m.name].file_size for m in art.members))
            check_free_space(dest, needed, f"extracting {art.file}")
            for member in art.members:
                target = dest / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                size = 0
                with zf.open(infos[member.name]) as src, open(target, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        size += len(chunk)
                        total += len(chunk)
                        if member.size is not None and size > member.size:
                            raise IntegrityError(f"{art.file}: member {member.name!r} is larger than its "
                                                 f"declared {member.size} bytes; refused")
                        if total > limit:
                            raise IntegrityError(f"{art.file}: members unpack to more than {limit} bytes "
                                                 f"(the bound for this archive); refused")
                        h.update(chunk)
                        out.write(chunk)
                if member.size is not None and size != member.size:
                    raise IntegrityError(f"{art.file}: member {member.name!r}: expected {member.size} bytes, "
                                         f"received {size}")
                digest = h.hexdigest()
                if member.sha256 is not None and digest != member.sha256:
                    raise IntegrityError(f"{art.file}: member {member.name!r}: expected sha256 {member.sha256}, "
                                         f"received {digest}")
                index[member.name] = {"size": size, "sha256": digest}
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        # a pinned sha256 vouches for the bytes, not for their being a well-formed zip
        raise IntegrityError(f"{art.file}: not a valid zip archive ({exc})") from None
    return index


def check_free_space(where: Path, needed: int, what: str) -> None:
    """DownloadError naming the bytes needed when ``where``'s file system has fewer free."""
    import shutil

    free = shutil.disk_usage(where).free
    if free < needed:
        raise DownloadError(f"{what} needs {needed:,} bytes but only {free:,} are free in {where}; "
                            "free some space or point MLFREEZE_CACHE / --cache elsewhere")
