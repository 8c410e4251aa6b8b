"""Shared-library closure of a bundle: every library a binary needs is shipped or is the host's.

Checked on any host, without a GPU, from the files alone (pyelftools for ELF, macholib for
Mach-O, pefile for PE). For every binary in a bundle, each library it links against must
resolve the way the platform's loader would resolve it inside the bundle, or be on a short
allowlist of libraries that must come from the host (the C library family, the GPU driver).
Libraries loaded with dlopen are data per profile (``[closure] dlopen`` in src/mlfreeze/platforms/<p>.toml):
each must be present, reachable from the library that loads it, and its own closure must resolve.

Loader models (docs/architecture.md "Shared-library closure"):

- ELF (glibc ld.so): a DT_NEEDED name is looked up in the object's DT_RPATH (only when it has
  no DT_RUNPATH; then also the DT_RPATH of the objects that need it, as ld.so walks the loader
  chain), LD_LIBRARY_PATH (PyInstaller's bootloader sets it to ``_internal/`` for the process
  it runs), then the object's DT_RUNPATH. ``$ORIGIN`` is the object's directory. A name
  already loaded under that SONAME would also satisfy it, but load order is not knowable from
  files, so that is never assumed.
- Mach-O (dyld): ``@loader_path``, ``@executable_path`` (the bundle's top) and ``@rpath``
  (the binary's LC_RPATH entries, then the executable's); /usr/lib and /System are the host's.
  Weak imports (LC_LOAD_WEAK_DYLIB) are optional.
- PE (Windows): the importing DLL's directory (Python loads extension modules with
  LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR), the executable's directory and ``_internal/``
  (PyInstaller's bootloader adds it with SetDllDirectory); API sets and system DLLs are the host's.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INTERNAL = "_internal"

# ELF libraries that must come from the host: glibc's own libraries (their ABI is the
# system's; PyInstaller never collects them, see PyInstaller.depend.dylib) and the NVIDIA
# driver's user-space libraries, which must match the installed kernel driver. libstdc++ and
# libgcc_s are NOT here: PyInstaller collects them, and a host's older copy lacks the symbol
# versions the CUDA libraries need, so a bundle without them is a finding.
ELF_SYSTEM = tuple(re.compile(p) for p in (
    r"libc\.so\.6", r"libm\.so\.6", r"libdl\.so\.2", r"libpthread\.so\.0", r"librt\.so\.1",
    r"libutil\.so\.1", r"libresolv\.so\.2", r"libanl\.so\.1", r"libcrypt\.so\.1", r"libnsl\.so\.1",
    r"libthread_db\.so\.1", r"libBrokenLocale\.so\.1", r"libmvec\.so\.1",
    r"ld-linux(-x86-64|-aarch64)?\.so\.[12]", r"linux-vdso\.so\.1",
    r"libcuda\.so\.1", r"libnvidia-ml\.so\.1", r"libnvidia-ptxjitcompiler\.so\.1",
    r"libnvidia-nvvm\.so\.[45]",
))
# Libraries that importing a Python package loads into the process, which extensions built
# against that package then find by SONAME (already loaded), shipping no RPATH to them. This is
# load order a file cannot show, so it is declared, narrowly: only for the objects in ``users``
# (which can only be imported after the package), and only the libraries reachable from
# ``roots`` through DT_NEEDED inside the bundle (so a missing one is still a finding).
# torch: ``import torch`` loads torch/_C (-> libtorch_python -> libtorch, libtorch_cpu,
# libtorch_cuda, libc10, libc10_cuda) and torch/lib/libtorch_global_deps; torchvision's
# _C_stable.so and image_stable.so need those by name, with no RPATH to torch/lib, and torchvision
# imports torch first.
@dataclass(frozen=True)
class Preload:
    roots: tuple[str, ...]  # globs, relative to _internal/: what the import loads
    users: tuple[str, ...]  # globs, relative to _internal/: objects loaded only after that import


PRELOADS = (
    Preload(roots=("torch/_C*.so", "torch/lib/libtorch_global_deps.so"),
            users=("torchvision/*", "torchaudio/*", "torch/*")),
)

# Mach-O: the OS's libraries and frameworks (in the dyld shared cache, not on disk).
MACHO_SYSTEM_PREFIXES = ("/usr/lib/", "/System/Library/")
# PE: API sets, then DLLs every supported Windows has in System32 (KnownDLLs and their
# neighbours), then the NVIDIA driver's. The VC++ runtime (vcruntime140, msvcp140) is not
# here: PyInstaller collects it.
PE_SYSTEM_PATTERNS = tuple(re.compile(p, re.I) for p in (r"api-ms-win-.*\.dll", r"ext-ms-.*\.dll"))
PE_SYSTEM = frozenset(n.lower() for n in (
    "kernel32.dll", "kernelbase.dll", "ntdll.dll", "user32.dll", "gdi32.dll", "advapi32.dll",
    "shell32.dll", "shlwapi.dll", "ole32.dll", "oleaut32.dll", "comdlg32.dll", "comctl32.dll",
    "ws2_32.dll", "wsock32.dll", "crypt32.dll", "bcrypt.dll", "ncrypt.dll", "secur32.dll", "rpcrt4.dll",
    "version.dll", "winmm.dll", "imm32.dll", "setupapi.dll", "cfgmgr32.dll", "iphlpapi.dll",
    "dnsapi.dll", "userenv.dll", "psapi.dll", "powrprof.dll", "wintrust.dll", "dbghelp.dll",
    "msvcrt.dll", "ucrtbase.dll", "normaliz.dll", "mswsock.dll", "netapi32.dll", "winhttp.dll",
    "wininet.dll", "dxgi.dll", "d3d11.dll", "d3d12.dll", "opengl32.dll", "dwmapi.dll", "uxtheme.dll",
    "nvcuda.dll", "nvml.dll",
))


@dataclass(frozen=True, kw_only=True)
class Binary:
    """What a loader reads from one binary: the libraries it links and where it looks."""

    format: str  # "elf", "macho", "pe"
    needed: tuple[str, ...]  # DT_NEEDED / LC_LOAD_DYLIB install names / PE import DLL names
    rpath: tuple[str, ...] = ()  # DT_RPATH / LC_RPATH
    runpath: tuple[str, ...] = ()  # DT_RUNPATH
    soname: str = ""
    weak: tuple[str, ...] = ()  # Mach-O LC_LOAD_WEAK_DYLIB: optional at load time
    executable: bool = False
    # ELF .gnu.version_r: (library, version node) pairs, e.g. ("libc.so.6", "GLIBC_2.34")
    versions: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------------------- readers

def read_binary(path: Path) -> Binary | None:
    """The loader-relevant facts of ``path``, or None when it is not an ELF, Mach-O or PE binary."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        return None
    if magic == b"\x7fELF":
        return read_elf(path)
    if magic[:2] == b"MZ":
        return read_pe(path)
    if magic in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce",
                 b"\xca\xfe\xba\xbe", b"\xbe\xba\xfe\xca"):
        return read_macho(path)
    return None


def _split_paths(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(p for v in values for p in v.split(":") if p)


def read_elf(path: Path) -> Binary | None:
    """DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME and the symbol versions needed from each library
    (``.gnu.version_r``) (pyelftools); None for objects without them."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            if elf["e_type"] not in ("ET_DYN", "ET_EXEC"):
                return None
            needed: list[str] = []
            rpath: list[str] = []
            runpath: list[str] = []
            soname = ""
            versions: list[tuple[str, str]] = []
            for section in elf.iter_sections():
                if isinstance(section, GNUVerNeedSection):
                    for verneed, auxes in section.iter_versions():
                        versions += [(str(verneed.name), str(aux.name)) for aux in auxes]
                if not isinstance(section, DynamicSection):
                    continue
                for tag in section.iter_tags():
                    kind = tag.entry.d_tag
                    if kind == "DT_NEEDED":
                        needed.append(tag.needed)  # type: ignore[attr-defined]  # set per tag kind
                    elif kind == "DT_RPATH":
                        rpath.append(tag.rpath)  # type: ignore[attr-defined]
                    elif kind == "DT_RUNPATH":
                        runpath.append(tag.runpath)  # type: ignore[attr-defined]
                    elif kind == "DT_SONAME":
                        soname = tag.soname  # type: ignore[attr-defined]
            return Binary(format="elf", needed=tuple(needed), rpath=_split_paths(rpath),
                          runpath=_split_paths(runpath), soname=soname, executable=elf["e_type"] == "ET_EXEC",
                          versions=tuple(dict.fromkeys(versions)))
    except (ELFError, ValueError, OSError):
        return None


def read_macho(path: Path) -> Binary | None:
    """LC_LOAD_DYLIB (and weak/re-export/upward) install names and LC_RPATH entries (macholib)."""
    from macholib import mach_o
    from macholib.MachO import MachO

    try:
        macho = MachO(str(path))
    except (ValueError, KeyError, OSError, Exception):  # macholib raises bare ValueError/struct.error
        return None
    needed: list[str] = []
    weak: list[str] = []
    rpath: list[str] = []
    executable = False
    load = {mach_o.LC_LOAD_DYLIB, mach_o.LC_REEXPORT_DYLIB, mach_o.LC_LOAD_UPWARD_DYLIB}
    for header in macho.headers:  # every architecture of a universal binary
        executable = executable or header.header.filetype == mach_o.MH_EXECUTE
        for load_cmd, _cmd, data in header.commands:
            if load_cmd.cmd in load or load_cmd.cmd == mach_o.LC_LOAD_WEAK_DYLIB:
                name = data.rstrip(b"\x00").decode("utf-8", "replace")
                (weak if load_cmd.cmd == mach_o.LC_LOAD_WEAK_DYLIB else needed).append(name)
            elif load_cmd.cmd == mach_o.LC_RPATH:
                rpath.append(data.rstrip(b"\x00").decode("utf-8", "replace"))
    return Binary(format="macho", needed=tuple(dict.fromkeys(needed)), weak=tuple(dict.fromkeys(weak)),
                  rpath=tuple(dict.fromkeys(rpath)), executable=executable)


def read_pe(path: Path) -> Binary | None:
    """The DLL names of the import table and the delay-load import table (pefile)."""
    import pefile

    try:
        pe = pefile.PE(str(path), fast_load=True)
    except pefile.PEFormatError:
        return None
    try:
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"],
                                               pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT"]])
        names = [e.dll.decode("ascii", "replace") for e in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])]
        delayed = [e.dll.decode("ascii", "replace") for e in getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", [])]
        executable = not pe.is_dll()
    finally:
        pe.close()
    # A delay-loaded DLL is loaded at its first call, so it is as needed as an import.
    return Binary(format="pe", needed=tuple(dict.fromkeys(names + delayed)), executable=executable)


# ---------------------------------------------------------------------------- the bundle

@dataclass(frozen=True, kw_only=True)
class Tree:
    """A bundle's files as the loader sees them: POSIX relative paths, symlinks resolved by name."""

    files: frozenset[str]  # every regular file, and every symlink whose target is inside the tree
    internal: str  # "_internal", or "" for a tree without one (a site-packages stand-in)
    binaries: Mapping[str, Binary] = field(default_factory=dict)

    def exists(self, rel: str) -> bool:
        return posixpath.normpath(rel) in self.files

    @property
    def lib_dir(self) -> str:
        return self.internal or "."


def scan(bundle_dir: Path) -> Tree:
    """Walk ``bundle_dir`` and read every binary in it (symlinks count where they resolve inside)."""
    root = bundle_dir.resolve()
    files: set[str] = set()
    binaries: dict[str, Binary] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                try:
                    target = full.resolve(strict=True)
                    target.relative_to(root)
                except (OSError, ValueError):
                    continue  # dangling, or points outside the bundle: not shipped
                if target.is_file():
                    files.add(rel)
                continue
            files.add(rel)
            if full.stat().st_size < 64 or name.endswith((".py", ".pyc", ".json", ".txt", ".onnx", ".safetensors")):
                continue
            binary = read_binary(full)
            if binary is not None:
                binaries[rel] = binary
    internal = INTERNAL if (root / INTERNAL).is_dir() else ""
    return Tree(files=frozenset(files), internal=internal, binaries=binaries)


# ---------------------------------------------------------------------------- resolution

def _elf_dirs(entries: Sequence[str], origin: str) -> list[str]:
    out = []
    for entry in entries:
        if "ORIGIN" not in entry:
            continue  # absolute (the build machine's) or relative to the working directory: not the bundle
        expanded = entry.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
        out.append(posixpath.normpath(expanded))
    return out


def elf_search_dirs(tree: Tree, rel: str, parents: Mapping[str, Sequence[str]]) -> list[str]:
    """The directories ld.so tries for a DT_NEEDED (or dlopen) of the object at ``rel``, in order."""
    binary = tree.binaries[rel]
    origin = posixpath.dirname(rel) or "."
    dirs: list[str] = []
    if not binary.runpath:
        dirs += _elf_dirs(binary.rpath, origin)
        for parent in parents.get(rel, ()):
            pb = tree.binaries[parent]
            if not pb.runpath:
                dirs += _elf_dirs(pb.rpath, posixpath.dirname(parent) or ".")
    dirs.append(tree.lib_dir)  # LD_LIBRARY_PATH, set by the bootloader
    dirs += _elf_dirs(binary.runpath, origin)
    return list(dict.fromkeys(dirs))


def _elf_system(name: str) -> bool:
    return any(p.fullmatch(name) for p in ELF_SYSTEM)


def _resolve_macho(tree: Tree, rel: str, name: str, exe_rpaths: Sequence[str]) -> str | None:
    loader = posixpath.dirname(rel) or "."
    exe_dir = "."

    def subst(path: str) -> str:
        return posixpath.normpath(path.replace("@loader_path", loader).replace("@executable_path", exe_dir))

    if name.startswith("@rpath/"):
        rpaths = list(tree.binaries[rel].rpath) + list(exe_rpaths)
        for rp in rpaths:
            if rp.startswith("/"):
                continue
            candidate = posixpath.join(subst(rp), name[len("@rpath/"):])
            if tree.exists(candidate):
                return posixpath.normpath(candidate)
        return None
    if name.startswith(("@loader_path/", "@executable_path/")):
        candidate = subst(name)
        return candidate if tree.exists(candidate) else None
    if "/" not in name:  # a bare name: dyld's fallback path includes the executable's directory
        for d in (loader, tree.lib_dir):
            if tree.exists(posixpath.join(d, name)):
                return posixpath.normpath(posixpath.join(d, name))
    return None


def _resolve_pe(tree: Tree, rel: str, name: str, lowered: Mapping[str, str]) -> str | None:
    """``lowered``: the tree's files by lower-cased path (Windows file names are case-insensitive)."""
    for d in (posixpath.dirname(rel) or ".", ".", tree.lib_dir):
        hit = lowered.get(posixpath.normpath(posixpath.join(d, name)).lower())
        if hit:
            return hit
    return None


def _pe_system(name: str) -> bool:
    return name.lower() in PE_SYSTEM or any(p.fullmatch(name) for p in PE_SYSTEM_PATTERNS)


def _parents(tree: Tree) -> dict[str, list[str]]:
    """ELF object -> the objects whose DT_NEEDED name it (by SONAME or file name)."""
    by_name: dict[str, list[str]] = {}
    for rel, b in tree.binaries.items():
        if b.format == "elf":
            for key in {b.soname, posixpath.basename(rel)} - {""}:
                by_name.setdefault(key, []).append(rel)
    parents: dict[str, list[str]] = {}
    for rel, b in tree.binaries.items():
        if b.format != "elf":
            continue
        for name in b.needed:
            for child in by_name.get(name, ()):
                parents.setdefault(child, []).append(rel)
    return parents


def resolve_elf(tree: Tree, rel: str, name: str, parents: Mapping[str, Sequence[str]]) -> str | None:
    """Where ld.so would find ``name`` for the object at ``rel`` inside the bundle, or None."""
    if "/" in name:
        candidate = posixpath.normpath(posixpath.join(posixpath.dirname(rel), name))
        return candidate if tree.exists(candidate) else None
    for d in elf_search_dirs(tree, rel, parents):
        candidate = posixpath.normpath(posixpath.join(d, name))
        if tree.exists(candidate):
            return candidate
    return None


def preloaded_names(tree: Tree, preload: Preload, parents: Mapping[str, Sequence[str]]) -> frozenset[str]:
    """SONAMEs and file names of the ELF objects ``preload``'s roots load, transitively, as ld.so
    resolves them inside ``tree`` (names that do not resolve are not counted)."""
    base = tree.internal
    globs = [posixpath.join(base, g) if base else g for g in preload.roots]
    todo = [r for r in tree.binaries if tree.binaries[r].format == "elf"
            and any(fnmatch.fnmatchcase(r, g) for g in globs)]
    seen: set[str] = set()
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        for name in tree.binaries[rel].needed:
            hit = None if _elf_system(name) else resolve_elf(tree, rel, name, parents)
            if hit is not None and hit in tree.binaries:
                todo.append(hit)
    return frozenset(n for r in seen for n in (posixpath.basename(r), tree.binaries[r].soname) if n)


def tree_findings(tree: Tree, *, dlopen: Sequence[Any] = (), optional: Sequence[str] = ()) -> list[str]:
    """Every unresolved link in ``tree``, one line each, sorted; [] when the closure is complete.

    ``dlopen``: objects with ``lib``, ``by``, ``at`` and ``preload`` (platforms.profiles.DlopenLib),
    paths relative to the tree's ``_internal/``; a preload entry must be at ``at/lib`` and its
    SONAMEs (with what they load) satisfy ``by``'s DT_NEEDED. ``optional``: globs (same base) of plug-ins whose
    own missing links are not findings.
    """
    findings: list[str] = []
    parents = _parents(tree)
    base = tree.internal

    def rel_internal(path: str) -> str:
        return posixpath.normpath(posixpath.join(base, path)) if base else posixpath.normpath(path)

    optional_globs = [rel_internal(g) for g in optional]
    # profile entries with preload = true: loaded by path by mlfreeze_runtime.device before `by`
    declared: dict[str, list[str]] = {}
    for entry in dlopen:
        if getattr(entry, "preload", False):
            declared.setdefault(entry.by, []).append(posixpath.join(entry.at, entry.lib))
    preloads = list(PRELOADS) + [Preload(roots=tuple(libs), users=(by,)) for by, libs in declared.items()]
    preloaded = [([rel_internal(g) for g in p.users], preloaded_names(tree, p, parents)) for p in preloads]
    lowered = {f.lower(): f for f in tree.files} if any(b.format == "pe" for b in tree.binaries.values()) else {}
    exe_rpaths = [r for rel, b in tree.binaries.items() if b.format == "macho" and b.executable and "/" not in rel
                  for r in b.rpath]
    for rel in sorted(tree.binaries):
        if any(fnmatch.fnmatchcase(rel, g) for g in optional_globs):
            continue
        binary = tree.binaries[rel]
        for name in binary.needed:
            if binary.format == "elf":
                if _elf_system(name) or resolve_elf(tree, rel, name, parents):
                    continue
                if any(name in names and any(fnmatch.fnmatchcase(rel, g) for g in users)
                       for users, names in preloaded):
                    continue  # loaded by an import that always comes first (PRELOADS)
            elif binary.format == "macho":
                if name.startswith(MACHO_SYSTEM_PREFIXES) or _resolve_macho(tree, rel, name, exe_rpaths):
                    continue
            elif _pe_system(name) or _resolve_pe(tree, rel, name, lowered):
                continue
            findings.append(f"{rel}: needs {name}, which is neither in the bundle where the loader looks "
                            "nor a system library")
    for entry in dlopen:
        by_glob = rel_internal(entry.by)
        loaders = sorted(r for r in tree.binaries if fnmatch.fnmatchcase(r, by_glob))
        if not loaders:  # PyInstaller put it elsewhere (e.g. the top of _internal/): match by file name
            name_glob = posixpath.basename(entry.by)
            loaders = sorted(r for r in tree.binaries if fnmatch.fnmatchcase(posixpath.basename(r), name_glob))
        if not loaders:
            continue  # nothing in this bundle loads it (a flavor without that library)
        if getattr(entry, "preload", False):
            where = rel_internal(posixpath.join(entry.at, entry.lib))
            if not tree.exists(where):
                findings.append(f"{where}: missing: mlfreeze_runtime.device loads it by path before {loaders[0]}, "
                                "which needs it (declared in the profile's [closure] dlopen with preload = true)")
            continue
        for loader in loaders:
            binary = tree.binaries[loader]
            if binary.format == "elf":
                hit = resolve_elf(tree, loader, entry.lib, parents)
            elif binary.format == "macho":
                hit = _resolve_macho(tree, loader, entry.lib, exe_rpaths)
            else:
                hit = _resolve_pe(tree, loader, entry.lib, lowered)
            if hit is None:
                where = rel_internal(posixpath.join(entry.at, entry.lib))
                findings.append(f"{where}: missing: {loader} loads {entry.lib} with dlopen and the loader "
                                "does not find it in the bundle (declared in the profile's [closure] dlopen)")
    return sorted(dict.fromkeys(findings))


def closure_findings(bundle_dir: Path, platform: str | None, tree: Tree | None = None) -> list[str]:
    """Shared-library closure findings of the bundle at ``bundle_dir``; [] when it is complete.

    ``platform``: the profile name (src/mlfreeze/platforms/<platform>.toml) whose ``[closure]`` table adds the
    dlopen'd libraries and optional plug-ins; None checks only the links in the files. Each
    finding is one line naming the file and the library. Raises UsageError for an unknown
    platform (mlfreeze.platforms.profiles.load_profile). ``tree``: the bundle already read with
    :func:`scan` (the audit reuses one scan for the glibc floor, mlfreeze.bundle.glibc).
    """
    dlopen: Sequence[Any] = ()
    optional: Sequence[str] = ()
    if platform is not None:
        from mlfreeze.platforms.profiles import load_profile

        spec = load_profile(platform).closure
        dlopen, optional = spec.dlopen, spec.optional
    return tree_findings(tree or scan(bundle_dir), dlopen=dlopen, optional=optional)
