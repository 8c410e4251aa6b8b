"""The one grammar for names that signed metadata (or a model pack) turns into paths, and the
containment check at every join that writes or deletes.

A *name* becomes one path component: a variant (``versions/<name>``, ``.staging/<name>.<pid>``,
the ``current`` pointer), a version, platform, flavor or app (the app names the executables a
check runs), a model set or pack version (``models/<set>-<version>``). Grammar::

    [A-Za-z0-9][A-Za-z0-9._+-]{0,127}      not ending in "." and not a Windows device name

so never empty, ``.``/``..``, absolute, with a separator, a backslash, a NUL or another control
character, a colon or a space. A *blob id* (a sha256, ``.downloads/<sha256>``) is 64 lowercase hex
digits. A *file path* (a row of RECORD, of the index or of a model pack) is POSIX and relative:
components separated by ``/``, none empty, ``.`` or ``..``, no backslash, no control character,
no drive (``C:``), at most 4096 characters.

Names are checked when the metadata is read (:func:`check_name`, :func:`check_sha256`,
:func:`check_relpath` raise FetchError, exit 3, before anything is written); :func:`inside`
checks again, on the resolved path, at each join that writes or deletes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mlfreeze_runtime.update.errors import FetchError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_WINDOWS_DEVICES = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                              *(f"lpt{i}" for i in range(1, 10))})
MAX_PATH = 4096


def name_problem(value: object) -> str | None:
    """Why ``value`` is not a valid name (None when it is)."""
    if not isinstance(value, str):
        return f"not a string ({type(value).__name__})"
    if not _NAME.match(value):
        return "not [A-Za-z0-9][A-Za-z0-9._+-]* of at most 128 characters"
    if value.endswith("."):
        return "ends with '.'"
    if value.split(".")[0].lower() in _WINDOWS_DEVICES:
        return "a Windows device name"
    return None


def check_name(value: object, what: str, where: str) -> str:
    """``value`` when it is a valid name; FetchError (exit 3) naming ``what`` and ``where`` else."""
    why = name_problem(value)
    if why is not None:
        raise FetchError(f"{where}: {what} {value!r} is not a safe name ({why}); the release is damaged or "
                         "hostile: nothing installed")
    return str(value)


def check_sha256(value: object, what: str, where: str) -> str:
    """``value`` when it is 64 lowercase hex digits; FetchError (exit 3) else."""
    if not isinstance(value, str) or not _HEX64.match(value):
        raise FetchError(f"{where}: {what} {value!r} is not a sha256 (64 lowercase hex digits); the release is "
                         "damaged or hostile: nothing installed")
    return value


def relpath_problem(value: object) -> str | None:
    """Why ``value`` is not a safe relative POSIX path (None when it is)."""
    if not isinstance(value, str):
        return f"not a string ({type(value).__name__})"
    if not value or len(value) > MAX_PATH:
        return "empty or too long"
    if _CONTROL.search(value):
        return "holds a control character (NUL, newline...)"
    if "\\" in value:
        return "holds a backslash"
    if value.startswith("/") or _DRIVE.match(value):
        return "absolute"
    if any(part in ("", ".", "..") for part in value.split("/")):
        return "has an empty, '.' or '..' component"
    return None


def check_relpath(value: object, what: str, where: str) -> str:
    """``value`` when it is a safe relative POSIX path; FetchError (exit 3) else."""
    why = relpath_problem(value)
    if why is not None:
        raise FetchError(f"{where}: {what} {value!r} escapes the install or is not a plain relative path ({why}); "
                         "the release is damaged or hostile: nothing installed")
    return str(value)


def inside(root: Path, path: Path) -> Path:
    """``path`` when, resolved (links followed), it lies inside ``root`` (resolved); FetchError
    (exit 3) else. Used at every join of a name from metadata that writes or deletes."""
    base = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != base and base not in real.parents:
        raise FetchError(f"{path}: resolves to {real}, outside {base}; refused: nothing written there")
    return path
