"""The image's base: only what a bundle needs from the system, from the distribution's packages.

A PyInstaller bundle carries its Python, its extensions and their libraries; what it takes
from the system is what its ELF files name in DT_NEEDED without shipping it (glibc's family,
zlib for the bootloader, and the NVIDIA driver's libraries on a GPU host). :func:`host_needs`
finds those names with the loader model of :mod:`mlfreeze.bundle.closure` and the newest
``GLIBC_x.y`` symbol version the bundle asks for; :func:`packages_for` maps each name to its
Debian package (:data:`PACKAGES`, data; the driver's libraries map to none: they come from the
host through nvidia-container-toolkit / CDI); :func:`pick_suite` takes the oldest supported
Debian release whose glibc is new enough. :func:`base_tar` then unpacks exactly those packages
(``mmdebstrap --variant=extract``: no maintainer scripts, no shell, no package manager) into a
tar, cached under ``$MLFREEZE_CACHE/images/`` by suite, architecture, packages and mirror, so
the second image and an offline host reuse it (or pass a prepared tar: ``--base-tar``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlfreeze import _proc as proc
from mlfreeze.errors import FreezeError, UsageError

# SONAME pattern -> Debian package (the same name in every suite listed in SUITES).
PACKAGES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), pkg) for p, pkg in (
    (r"libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libutil\.so\.1|libresolv\.so\.2"
     r"|libanl\.so\.1|libmvec\.so\.1|libBrokenLocale\.so\.1|libthread_db\.so\.1|libnss_\w+\.so\.2"
     r"|ld-linux(-x86-64|-aarch64)?\.so\.[12]|linux-vdso\.so\.1", "libc6"),
    (r"libz\.so\.1", "zlib1g"),
    (r"libgcc_s\.so\.1", "libgcc-s1"),
    (r"libstdc\+\+\.so\.6", "libstdc++6"),
    (r"libgomp\.so\.1", "libgomp1"),
    (r"libcrypt\.so\.1", "libcrypt1"),
    (r"libbz2\.so\.1(\.0)?", "libbz2-1.0"),
    (r"liblzma\.so\.5", "liblzma5"),
    (r"libexpat\.so\.1", "libexpat1"),
    (r"libuuid\.so\.1", "libuuid1"),
))
# The NVIDIA driver's user-space libraries: never in the image; the container runtime mounts the
# host's (nvidia-container-toolkit, or CDI: --device nvidia.com/gpu=all).
DRIVER = re.compile(r"libcuda\.so\.1|libnvidia-[\w.-]+\.so(\.\d+)*|libnvcuvid\.so\.1|libnvidia-ml\.so\.1")
ALWAYS = ("base-files",)  # /etc/os-release and the directory skeleton
# Supported Debian releases, oldest first, with their glibc (the release notes' version).
SUITES: tuple[tuple[str, tuple[int, int]], ...] = (("bookworm", (2, 36)), ("trixie", (2, 41)))
DEBIAN_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
MIRROR_ENV = "MLFREEZE_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
STATUS_HOOK = ('for d in "$1"/var/cache/apt/archives/*.deb; do dpkg-deb -f "$d" && echo "Status: install ok installed" '
               '&& echo; done > "$1/var/lib/dpkg/status"')
_GLIBC = re.compile(r"^GLIBC_(\d+)\.(\d+)")


@dataclass(frozen=True, kw_only=True)
class HostNeeds:
    """What a bundle takes from the system: SONAMEs by a file that needs it, and the glibc floor."""

    libraries: Mapping[str, str]  # soname -> first bundle file (relative) that needs it
    glibc: tuple[int, int]  # newest GLIBC_x.y symbol version required, (0, 0) when none


def host_needs(bundle: Path, platform: str | None = None) -> HostNeeds:
    """Every DT_NEEDED name of the bundle's ELF files that does not resolve inside the bundle, as
    the closure audit resolves it (:mod:`mlfreeze.bundle.closure`: ld.so's search, the libraries an
    import always loads first, the profile's preloaded and optional plug-ins of ``platform``), except
    that the executables at the top, PyInstaller's bootloaders, are loaded by ld.so before they set
    LD_LIBRARY_PATH to ``_internal/``: only their own RPATH/RUNPATH count. Plus the newest GLIBC
    symbol version any ELF file asks for."""
    import fnmatch
    import posixpath

    from mlfreeze.bundle import closure

    tree = closure.scan(bundle)
    parents = closure._parents(tree)
    dlopen: Sequence[Any] = ()  # platforms.profiles.DlopenLib
    optional: Sequence[str] = ()
    if platform is not None:
        from mlfreeze.platforms.profiles import all_profiles

        profile = all_profiles().get(platform)
        if profile is not None:
            dlopen, optional = profile.closure.dlopen, profile.closure.optional

    def internal(path: str) -> str:
        return posixpath.normpath(posixpath.join(tree.internal, path)) if tree.internal else posixpath.normpath(path)

    declared: dict[str, list[str]] = {}
    for entry in dlopen:
        if getattr(entry, "preload", False):
            declared.setdefault(entry.by, []).append(posixpath.join(entry.at, entry.lib))
    preloads = [*closure.PRELOADS, *(closure.Preload(roots=tuple(libs), users=(by,)) for by, libs in declared.items())]
    preloaded = [([internal(g) for g in p.users], closure.preloaded_names(tree, p, parents)) for p in preloads]
    optional_globs = [internal(g) for g in optional]
    libraries: dict[str, str] = {}
    for rel in sorted(tree.binaries):
        binary = tree.binaries[rel]
        if binary.format != "elf" or any(fnmatch.fnmatchcase(rel, g) for g in optional_globs):
            continue
        for name in binary.needed:
            if "/" not in rel:  # a bootloader: its own RPATH/RUNPATH only (no libz from _internal/)
                dirs = closure._elf_dirs([*binary.rpath, *binary.runpath], ".")
                if not any(tree.exists(f"{d}/{name}") for d in dirs):
                    libraries.setdefault(name, rel)
            elif closure.resolve_elf(tree, rel, name, parents) is None and not any(
                    name in names and any(fnmatch.fnmatchcase(rel, g) for g in users) for users, names in preloaded):
                libraries.setdefault(name, rel)
    floor = (0, 0)
    for rel in sorted(tree.binaries):
        if tree.binaries[rel].format == "elf":
            floor = max(floor, glibc_floor(bundle / rel))
    return HostNeeds(libraries=dict(sorted(libraries.items())), glibc=floor)


def glibc_floor(path: Path) -> tuple[int, int]:
    """The newest ``GLIBC_x.y`` version the ELF file at ``path`` requires (its .gnu.version_r), (0, 0)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    best = (0, 0)
    try:
        with open(path, "rb") as f:
            for section in ELFFile(f).iter_sections():
                if not isinstance(section, GNUVerNeedSection):
                    continue
                for _verneed, auxiliaries in section.iter_versions():
                    for aux in auxiliaries:
                        if m := _GLIBC.match(aux.name):
                            best = max(best, (int(m[1]), int(m[2])))
    except (ELFError, OSError, ValueError):
        return (0, 0)
    return best


def packages_for(libraries: Mapping[str, str], extra: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(sorted Debian packages, sorted SONAMEs that map to none). The driver's libraries are
    neither: the host provides them. ``extra`` packages are added as they are."""
    packages = set(ALWAYS) | set(extra)
    unknown = []
    for name in libraries:
        if DRIVER.fullmatch(name):
            continue
        pkg = next((p for pattern, p in PACKAGES if pattern.fullmatch(name)), None)
        if pkg is None:
            unknown.append(name)
        else:
            packages.add(pkg)
    return sorted(packages), sorted(unknown)


def pick_suite(glibc: tuple[int, int], requested: str | None = None) -> str:
    """The oldest Debian release in :data:`SUITES` whose glibc is at least ``glibc``, or
    ``requested`` when it is new enough. UsageError when none is (or ``requested`` is older)."""
    versions = dict(SUITES)
    need = ".".join(map(str, glibc))
    if requested is not None:
        if requested not in versions:
            raise UsageError(f"--suite {requested!r} is not one of {', '.join(versions)}")
        if versions[requested] < glibc:
            raise UsageError(f"the bundle needs glibc {need}, but Debian {requested} has "
                             f"{'.'.join(map(str, versions[requested]))}; pick a newer --suite")
        return requested
    for suite, version in SUITES:
        if version >= glibc:
            return suite
    raise UsageError(f"the bundle needs glibc {need}, newer than every supported Debian release "
                     f"({', '.join(f'{s} {v[0]}.{v[1]}' for s, v in SUITES)}); build it on an older system")


def cache_key(*, suite: str, arch: str, packages: Sequence[str], mirror: str) -> str:
    text = "\n".join([suite, arch, mirror, *sorted(packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def base_tar(*, suite: str, arch: str, packages: Sequence[str], cache_dir: Path, epoch: int,
             mirror: str | None = None) -> Path:
    """The root file system of ``packages`` from Debian ``suite`` as a tar (mmdebstrap
    ``--variant=extract``), from the cache when it was made before. FreezeError (exit 4) when
    mmdebstrap is missing or fails (nothing is left in the cache then)."""
    mirror = mirror or os.environ.get(MIRROR_ENV, "").strip() or DEFAULT_MIRROR
    key = cache_key(suite=suite, arch=arch, packages=packages, mirror=mirror)
    out = cache_dir / "images" / f"base-{suite}-{arch}-{key}.tar"
    if out.is_file():
        print(f"image: base {out.name} from the cache ({', '.join(packages)})", flush=True)
        return out
    tool = shutil.which("mmdebstrap")
    if tool is None:
        raise FreezeError("mmdebstrap is not installed (apt-get install mmdebstrap), and no cached base matches; "
                          "install it, or pass a prepared root file system tar with --base-tar")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.tar")
    cmd: list[str] = [tool, "--variant=extract", f"--architectures={arch}", f"--include={','.join(packages)}",
                      *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "info", "locale",
                                                                             "lintian"))]
    # the extract variant runs no dpkg, so it records no installed package: write var/lib/dpkg/status
    # from the unpacked .debs' control files, for scanners (trivy, syft) and the image's SBOM
    cmd.append("--extract-hook=" + STATUS_HOOK)
    if KEYRING.is_file():
        cmd.append(f"--keyring={KEYRING}")
    cmd += [suite, str(tmp), mirror]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    try:
        status = proc.run(cmd, env=env, check=False)
    except OSError as exc:
        status, why = -1, str(exc)
    else:
        why = f"exit {status}"
    if status != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise FreezeError(f"mmdebstrap failed ({why}) making the {suite} base from {mirror}; see its output above "
                          f"(offline? set {MIRROR_ENV} to a reachable mirror, or pass --base-tar)")
    os.replace(tmp, out)
    return out


def dpkg_packages(tar_path: Path) -> dict[str, str]:
    """``{package: version}`` from the base tar's ``var/lib/dpkg/status`` ({} without one)."""
    with tarfile.open(tar_path) as tar:
        for name in ("./var/lib/dpkg/status", "var/lib/dpkg/status"):
            try:
                member = tar.getmember(name)
            except KeyError:
                continue
            f = tar.extractfile(member)
            if f is not None:
                return parse_status(f.read().decode("utf-8", "replace"))
    return {}


def parse_status(text: str) -> dict[str, str]:
    """``{package: version}`` of a dpkg status file (installed packages only)."""
    out: dict[str, str] = {}
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if "Package" in fields and "Version" in fields and "not-installed" not in fields.get("Status", ""):
            out[fields["Package"]] = fields["Version"]
    return dict(sorted(out.items()))


def check_tar(path: Path) -> None:
    """UsageError unless ``path`` is a readable tar (a prepared ``--base-tar``)."""
    if not path.is_file():
        raise UsageError(f"--base-tar {path}: no such file")
    if not tarfile.is_tarfile(path):
        raise UsageError(f"--base-tar {path}: not a tar archive (make one with mmdebstrap --variant=extract)")


def summarize(libraries: Iterable[str]) -> str:
    return ", ".join(libraries) or "none"
