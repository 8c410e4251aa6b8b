"""The glibc floor of a Linux bundle: the newest glibc a machine needs to start it.

Every ELF file names, in its ``.gnu.version_r`` section, the symbol versions it needs from each
library (``GLIBC_2.34`` from libc.so.6, ``GLIBCXX_3.4.29`` from libstdc++.so.6). The dynamic loader
refuses to start a program whose file needs a version the machine's library lacks
(``version `GLIBC_2.35' not found``), before any Python runs. glibc is never shipped in a bundle
(mlfreeze.bundle.closure.ELF_SYSTEM), so the newest ``GLIBC_`` version any file of the bundle needs
is the bundle's floor: it runs on glibc >= floor and on nothing older.

Each Linux profile declares the newest floor it may ship (``glibc_floor``, src/mlfreeze/platforms/
<p>.toml; 2.28 = torch's manylinux_2_28); ``mlfreeze audit`` and ``release`` refuse a bundle above it,
naming the file that sets the floor. A build on a newer machine than the release container (a
developer's machine, this project's own CI) raises the allowed floor explicitly with
``MLFREEZE_GLIBC_FLOOR=<version>|host``; the freeze records the raised value and its source in
BUILD-INFO, and the audit accepts the bundle only while the same variable is set.

``GLIBCXX_`` versions are recorded too (the newest libstdc++ symbol version needed, and whether the
bundle ships its own libstdc++.so.6, which then provides it); only ``GLIBC_`` sets the floor.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlfreeze.errors import UsageError

FLOOR_ENV = "MLFREEZE_GLIBC_FLOOR"
HOST = "host"
_NUMBERED = re.compile(r"^(GLIBC|GLIBCXX)_(\d+(?:\.\d+)+)$")
# Version nodes without a number that exist only from a glibc release on (a file built with
# DT_RELR packed relocations needs glibc 2.36's loader).
ABI_NODES = {"GLIBC_ABI_DT_RELR": "2.36"}


def version_key(version: str) -> tuple[int, ...]:
    """"2.35" -> (2, 35); ValueError for anything that is not dotted integers."""
    return tuple(int(p) for p in version.split("."))


@dataclass(frozen=True, kw_only=True)
class Floor:
    """What a bundle's ELF files need. ``glibc``/``glibcxx``: the newest ``GLIBC_``/``GLIBCXX_``
    version needed ("2.35", "3.4.29"), each with the bundle-relative file that needs it (the first
    in path order among equals); None when no file needs one. ``libstdcxx_shipped``: the bundle
    carries libstdc++.so.6 (so GLIBCXX_ is the bundle's own business, not the machine's)."""

    glibc: str | None
    glibc_file: str | None
    glibcxx: str | None = None
    glibcxx_file: str | None = None
    libstdcxx_shipped: bool = False


def floor_of(binaries: Mapping[str, Any], files: frozenset[str] | set[str] = frozenset()) -> Floor:
    """The floor of the ELF objects ``binaries`` (bundle-relative path -> closure.Binary, whose
    ``versions`` holds (library, version node) pairs); ``files``: every file of the tree."""
    best: dict[str, tuple[tuple[int, ...], str, str]] = {}
    for rel in sorted(binaries):
        binary = binaries[rel]
        if getattr(binary, "format", "elf") != "elf":
            continue
        for _library, node in binary.versions:
            m = _NUMBERED.match(node)
            kind, version = (m.group(1), m.group(2)) if m else ("GLIBC", ABI_NODES.get(node, ""))
            if not version:
                continue  # GLIBC_PRIVATE, CXXABI_*, GCC_*: no floor of their own
            key = version_key(version)
            if kind not in best or key > best[kind][0]:
                best[kind] = (key, version, rel)
    glibc, glibcxx = best.get("GLIBC"), best.get("GLIBCXX")
    shipped = any(posixpath.basename(f).startswith("libstdc++.so.6") for f in files)
    return Floor(glibc=glibc[1] if glibc else None, glibc_file=glibc[2] if glibc else None,
                 glibcxx=glibcxx[1] if glibcxx else None, glibcxx_file=glibcxx[2] if glibcxx else None,
                 libstdcxx_shipped=shipped)


def bundle_floor(bundle: Path) -> Floor:
    """:func:`floor_of` the bundle folder (reads every ELF file with pyelftools)."""
    from mlfreeze.bundle.closure import scan

    tree = scan(bundle)
    return floor_of(tree.binaries, tree.files)


def host_glibc() -> str | None:
    """This machine's glibc version ("2.36"), None where the C library is not glibc."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        return None
    parts = text.split()
    return parts[1] if len(parts) == 2 and parts[0] == "glibc" else None


@dataclass(frozen=True, kw_only=True)
class Allowed:
    """The newest floor a bundle may have, and who said so: ``"profile linux-cuda"`` or
    ``"MLFREEZE_GLIBC_FLOOR=2.36"`` (a local build on a newer machine than the release container)."""

    version: str
    by: str

    @property
    def raised(self) -> bool:
        return not self.by.startswith("profile ")


def allowed_floor(profile_name: str, profile_floor: str, env: Mapping[str, str] | None = None) -> Allowed:
    """The profile's ``glibc_floor``, or what ``MLFREEZE_GLIBC_FLOOR`` raises it to (a version, or
    ``host`` for this machine's glibc). The variable never lowers the floor below the profile's.
    UsageError (exit 2) for a value that is neither."""
    env = os.environ if env is None else env
    value = env.get(FLOOR_ENV, "").strip()
    profile = Allowed(version=profile_floor, by=f"profile {profile_name}")
    if not value:
        return profile
    version = host_glibc() if value == HOST else value
    if version is None or not re.fullmatch(r"2\.\d+", version):
        raise UsageError(f"{FLOOR_ENV}={value!r}: expected a glibc version such as 2.36, or 'host' (this "
                         "machine's glibc" + (", which is not glibc here)" if value == HOST else ")"))
    if version_key(version) <= version_key(profile_floor):
        return profile
    return Allowed(version=version, by=f"{FLOOR_ENV}={value}" if value == version else f"{FLOOR_ENV}={value} "
                                                                                      f"({version})")


def record(floor: Floor, allowed: Allowed | None) -> dict[str, Any]:
    """BUILD-INFO's ``glibc`` object (docs/build-info.schema.json)."""
    return {"floor": floor.glibc, "file": floor.glibc_file, "glibcxx": floor.glibcxx,
            "glibcxx_file": floor.glibcxx_file, "libstdcxx": "bundle" if floor.libstdcxx_shipped else "host",
            "allowed": allowed.version if allowed else None, "allowed_by": allowed.by if allowed else None}


def above(floor: Floor, allowed: Allowed) -> str | None:
    """One line naming the file when ``floor`` is above ``allowed``, else None."""
    if floor.glibc is None or version_key(floor.glibc) <= version_key(allowed.version):
        return None
    how = (f"build it in the container its profile names, or, for a local build only, raise the floor with "
           f"{FLOOR_ENV}=host") if not allowed.raised else f"raise {FLOOR_ENV} or build it in the container its " \
                                                          "profile names"
    return (f"needs GLIBC_{floor.glibc}, above the glibc {allowed.version} floor allowed by {allowed.by}: it would "
            f"not start on a machine with glibc older than {floor.glibc} ({how})")


def freeze_record(bundle: Path, *, profile_name: str, host_os: str, profile_floor: str | None,
                  log: Any = print) -> dict[str, Any] | None:
    """BUILD-INFO's ``glibc`` for a bundle just frozen (None off Linux); says in one line when the
    bundle is above the allowed floor, which the audit and release will refuse."""
    if host_os != "linux" or profile_floor is None:
        return None
    floor = bundle_floor(bundle)
    allowed = allowed_floor(profile_name, profile_floor)
    problem = above(floor, allowed)
    if problem is not None:
        log(f"freeze: {bundle.name}: warning: {floor.glibc_file} {problem}; `mlfreeze audit` and `release` will "
            "refuse it")
    elif allowed.raised:
        log(f"freeze: {bundle.name}: glibc floor {floor.glibc} (set by {floor.glibc_file}) is within "
            f"{allowed.version}, raised by {allowed.by}: this is a local build, not one for older distributions")
    return record(floor, allowed)


def provided_glibc(libc: Path) -> str | None:
    """The glibc release a ``libc.so.6`` is ("2.31" for Debian 11's), from the version banner glibc
    prints when run (``GNU C Library ... release version 2.31``); else the newest ``GLIBC_`` version
    node it defines (``.gnu.version_d``; a release that added no symbol defines no node of its own,
    so 2.31 defines at most GLIBC_2.30). None for a file that is neither."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerDefSection

    try:
        data = libc.read_bytes()
    except OSError:
        return None
    banner = re.search(rb"GNU C Library[^\n\x00]*?release version (\d+\.\d+)", data)
    if banner:
        return banner.group(1).decode()
    best: tuple[int, ...] = ()
    try:
        with open(libc, "rb") as f:
            for section in ELFFile(f).iter_sections():
                if isinstance(section, GNUVerDefSection):
                    for _verdef, auxes in section.iter_versions():
                        for aux in auxes:
                            m = _NUMBERED.match(str(aux.name))
                            if m and m.group(1) == "GLIBC":
                                best = max(best, version_key(m.group(2)))
    except (ELFError, OSError, ValueError):
        return None
    return ".".join(map(str, best)) if best else None
