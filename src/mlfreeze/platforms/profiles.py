"""Platform profiles: one TOML per target, loaded into frozen dataclasses.

A profile is the single source of truth for a target's torch index, CUDA flavour,
onnxruntime distribution, expected execution providers, runner label and archive format.
The nox sessions and the GitHub matrix are derived from these files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from mlfreeze.errors import ConfigError, UsageError
from mlfreeze.schema import Table, read_toml

PROFILE_DIR = Path(__file__).resolve().parent
ACCELERATORS = ("cpu", "cuda", "mps")
HOST_OSES = ("linux", "macos", "windows")
HOST_ARCHES = ("x86_64", "arm64")
ARCHIVE_FORMATS = ("tar.gz", "zip")
ONNXRUNTIME_DISTS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml")
KNOWN_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "CoreMLExecutionProvider",
                   "DmlExecutionProvider", "ROCMExecutionProvider", "CPUExecutionProvider")
TORCH_INDEX_ENV = "MLFREEZE_TORCH_INDEX"
_VERSION = re.compile(r"^\d+(\.\d+){1,2}$")
_GLIBC = re.compile(r"^2\.\d+$")
# quay.io/pypa/manylinux_2_28_x86_64: the glibc a manylinux image builds for (PEP 600)
_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_(x86_64|aarch64)(:|@|$)")
_PYTHON = re.compile(r"^3\.\d+$")


@dataclass(frozen=True, kw_only=True)
class TorchSpec:
    version: str
    torchvision: str
    index_url: str  # "" means PyPI
    cuda: str  # "" for CPU / MPS builds, else the CUDA major[.minor] the wheel targets


@dataclass(frozen=True, kw_only=True)
class OnnxRuntimeSpec:
    package: str
    version: str
    providers: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class DlopenLib:
    """A library loaded at run time in a way PyInstaller's dependency scan cannot see.

    ``lib``: the name dlopen is called with. ``by``: the library that calls dlopen (or, with
    ``preload``, the library that needs ``lib`` loaded first), as a glob relative to the
    bundle's ``_internal/`` (equal to its path under site-packages). ``at``: the ``_internal/``
    directory it is collected into. ``modules``: the imports that bring ``by`` into a bundle
    (TOML ``module``, one name or a list; a flavor that excludes all of them does not collect
    the library).

    Without ``preload`` the library is collected from beside ``by`` into ``at``, one directory
    where the loader finds it from ``by``. With ``preload = true`` nothing finds it by search:
    mlfreeze_runtime.device loads it by path (``onnxruntime.preload_dlls``, from
    ``<site-packages>/nvidia/...`` = ``_internal/nvidia/...``) before ``by`` is loaded, and ``by``
    then finds it by SONAME; it is collected from ``<site-packages>/<at>/<lib>`` into ``at``.
    """

    lib: str
    by: str
    at: str
    modules: tuple[str, ...]
    preload: bool = False


@dataclass(frozen=True, kw_only=True)
class ClosureSpec:
    """``[closure]``: what the shared-library closure check (mlfreeze.bundle.closure) expects.

    ``cuda_major``/``cudnn_major``: the CUDA and cuDNN majors the profile's torch and
    onnxruntime builds link against (None for non-CUDA profiles). ``optional``: globs under
    ``_internal/`` of shipped plug-in libraries that load only on hosts with extra software
    (their missing DT_NEEDED are not findings); each needs a reason in the TOML.
    """

    cuda_major: int | None = None
    cudnn_major: int | None = None
    dlopen: tuple[DlopenLib, ...] = ()
    optional: tuple[str, ...] = ()


# Which CUDA and cuDNN majors each build links against, from the projects' release facts.
# onnxruntime-gpu on PyPI (onnxruntime.ai, "CUDA Execution Provider", Requirements): 1.15-1.18
# are CUDA 11.8 + cuDNN 8; from 1.19 the default PyPI build is CUDA 12.x + cuDNN 9; from 1.27
# it is CUDA 13 + cuDNN 9 (its libonnxruntime_providers_cuda.so needs libcublas.so.13).
# First version of each row, CUDA major, cuDNN major; rows in ascending order.
ONNXRUNTIME_GPU_BUILDS: tuple[tuple[tuple[int, int], int, int], ...] = (
    ((1, 15), 11, 8), ((1, 19), 12, 9), ((1, 27), 13, 9),
)
# torch's CUDA wheels: cuDNN 8 up to 2.3, cuDNN 9 from 2.4 (the same onnxruntime.ai page:
# "PyTorch 2.3 uses cuDNN 8.x, while PyTorch 2.4 or later uses cuDNN 9.x").
TORCH_CUDNN: tuple[tuple[tuple[int, int], int], ...] = (((1, 13), 8), ((2, 4), 9))


def _release(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def onnxruntime_gpu_majors(version: str) -> tuple[int, int] | None:
    """(CUDA major, cuDNN major) of onnxruntime-gpu ``version``'s PyPI build; None if older than the table."""
    found = None
    for first, cuda, cudnn in ONNXRUNTIME_GPU_BUILDS:
        if _release(version) >= first:
            found = (cuda, cudnn)
    return found


def torch_cudnn_major(version: str) -> int | None:
    """The cuDNN major torch ``version``'s CUDA wheels bring; None if older than the table."""
    found = None
    for first, cudnn in TORCH_CUDNN:
        if _release(version) >= first:
            found = cudnn
    return found


@dataclass(frozen=True, kw_only=True)
class Profile:
    name: str
    session: str
    description: str
    host_os: str
    host_arch: str
    accelerator: str
    python: str  # the default build interpreter ("3.11"); mlfreeze.project.pythons picks the project's
    runner: str
    archive_format: str
    constraints: tuple[str, ...]
    torch: TorchSpec
    onnxruntime: OnnxRuntimeSpec
    path: Path
    closure: ClosureSpec = ClosureSpec()
    # Linux only. glibc_floor: the newest glibc a bundle of this profile may need ("2.28"); the audit
    # refuses a bundle whose ELF files need a newer GLIBC_ symbol version (mlfreeze.bundle.glibc).
    # container: the image release.yml builds the profile in (a manylinux image, so the build
    # machine's glibc is the floor); "" builds on the runner itself.
    glibc_floor: str | None = None
    container: str = ""
    pythons: tuple[str, ...] = ()  # every "3.N" the pinned torch and onnxruntime have wheels for, ascending

    @property
    def supported_pythons(self) -> tuple[str, ...]:
        """``pythons``, or the default ``python`` alone when the profile lists none."""
        return self.pythons or (self.python,)

    def torch_index(self, env: Mapping[str, str] | None = None) -> str:
        """The torch index actually used: ``MLFREEZE_TORCH_INDEX`` overrides the profile's."""
        env = os.environ if env is None else env
        return env.get(TORCH_INDEX_ENV, "") or self.torch.index_url


@dataclass(frozen=True, kw_only=True)
class StackPart:
    """One part of the stack (src/mlfreeze/platforms/stack.toml ``[parts.<name>]``): clip, faces or faiss."""

    name: str
    torch: bool = False  # needs the profile's torch and torchvision
    onnxruntime: bool = False  # needs the profile's one onnxruntime distribution
    requirements: tuple[str, ...] = ()
    no_deps: tuple[str, ...] = ()  # installed with --no-deps (their requirements are listed instead)
    hiddenimports: tuple[str, ...] = ()  # collected into the bundle when the app uses the part
    excludes: tuple[str, ...] = ()  # kept out of the bundle when it does not


@dataclass(frozen=True, kw_only=True)
class Stack:
    """What a build installs besides torch and onnxruntime (src/mlfreeze/platforms/stack.toml), by part."""

    base: tuple[str, ...]
    parts: Mapping[str, StackPart]
    # import package -> the distributions that install it (at most one of each may be installed)
    families: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def family_of(self, distribution: str) -> str | None:
        """The import package whose family ``distribution`` belongs to, or None."""
        name = canonical_name(distribution)
        return next((module for module, members in self.families.items() if name in members), None)

    def select(self, uses: Sequence[str]) -> tuple[StackPart, ...]:
        """The parts ``uses`` names, in the file's order; ConfigError for an unknown part."""
        unknown = [u for u in uses if u not in self.parts]
        if unknown:
            raise ConfigError(f"unknown stack part {unknown[0]!r}; known: {', '.join(self.parts)}")
        return tuple(p for name, p in self.parts.items() if name in uses)

    # every part together (the example app uses all of them)
    @property
    def requirements(self) -> tuple[str, ...]:
        return self.base + tuple(r for p in self.parts.values() for r in p.requirements)

    @property
    def no_deps(self) -> tuple[str, ...]:
        return tuple(r for p in self.parts.values() for r in p.no_deps)

    @property
    def no_deps_requirements(self) -> tuple[str, ...]:
        """Kept for readers of the old layout: the --no-deps installs' own requirements are now part
        of their part's ``requirements`` (insightface's in [parts.faces])."""
        return ()


def canonical_name(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503): ``Opencv_Python`` -> ``opencv-python``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The canonical distribution name a requirement line names: ``faiss-cpu>=1.8`` -> ``faiss-cpu``."""
    return canonical_name(re.split(r"[\s<>=!~;\[@(]", requirement.strip(), maxsplit=1)[0])


def family_mixes(names: Iterable[str], families: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """``{import package: members}`` for every family that ``names`` (distribution names) names
    twice or more; empty when each family has at most one member among them."""
    present = {canonical_name(n) for n in names}
    mixes = {module: tuple(m for m in members if m in present) for module, members in families.items()}
    return {module: found for module, found in mixes.items() if len(found) > 1}


def _version(t: Table, key: str) -> str:
    value: str = t.take(key, str)
    if not _VERSION.match(value):
        raise t.error(key, f"is {value!r}; expected a release version like 2.14.1")
    return value


def load_profile_file(path: Path) -> Profile:
    t = Table(read_toml(path), path)
    name = t.take("name", str)
    if name != path.stem:
        raise t.error("name", f"is {name!r} but the file is {path.name}; they must match")
    session = t.take("session", str)
    if not session.startswith("build-"):
        raise t.error("session", f"is {session!r}; nox build sessions are named build-<...>")
    description = t.take("description", str)
    host_os = t.choice("host_os", HOST_OSES)
    host_arch = t.choice("host_arch", HOST_ARCHES)
    accelerator = t.choice("accelerator", ACCELERATORS)
    python = t.take("python", str)
    pythons = _pythons(t, python)
    runner = t.take("runner", str)
    archive_format = t.choice("archive_format", ARCHIVE_FORMATS)
    constraints = t.strings("constraints")

    tt = t.sub("torch")
    torch = TorchSpec(version=_version(tt, "version"), torchvision=_version(tt, "torchvision"),
                      index_url=tt.take("index_url", str), cuda=tt.take("cuda", str))
    if torch.index_url and not torch.index_url.startswith("https://"):
        raise tt.error("index_url", "must be an https:// URL or \"\" for PyPI")
    if (accelerator == "cuda") != bool(torch.cuda):
        raise tt.error("cuda", f"is {torch.cuda!r} but accelerator is {accelerator!r}; "
                               "a CUDA version is set exactly for cuda profiles")
    tt.done()

    ot = t.sub("onnxruntime")
    ort = OnnxRuntimeSpec(package=ot.choice("package", ONNXRUNTIME_DISTS), version=_version(ot, "version"),
                          providers=ot.strings("providers"))
    for provider in ort.providers:
        if provider not in KNOWN_PROVIDERS:
            raise ot.error("providers", f"names unknown provider {provider!r}; known: {', '.join(KNOWN_PROVIDERS)}")
    if not ort.providers or ort.providers[-1] != "CPUExecutionProvider":
        raise ot.error("providers", "must end with CPUExecutionProvider (the fallback every build has)")
    ot.done()
    closure = _closure(t.sub("closure"), accelerator=accelerator, torch=torch, ort=ort)
    glibc_floor, container = _glibc(t, host_os=host_os, host_arch=host_arch)
    t.done()
    return Profile(name=name, session=session, description=description, host_os=host_os,
                   host_arch=host_arch, accelerator=accelerator, python=python, runner=runner,
                   archive_format=archive_format, constraints=constraints, torch=torch,
                   onnxruntime=ort, path=path, closure=closure, glibc_floor=glibc_floor, container=container,
                   pythons=pythons)


def _glibc(t: Table, *, host_os: str, host_arch: str) -> tuple[str | None, str]:
    """``glibc_floor`` and ``container``: required on Linux profiles, refused elsewhere; a manylinux
    container must build for the floor (its glibc at most the floor) and the profile's arch."""
    floor = t.opt("glibc_floor", str, None)
    container = t.opt("container", str, "")
    if host_os != "linux":
        for key, value in (("glibc_floor", floor), ("container", container)):
            if value:
                raise t.error(key, f"is set but host_os is {host_os!r}; only Linux profiles have a glibc floor "
                                   "and a build container")
        return None, ""
    if floor is None:
        raise t.error("glibc_floor", "is missing; a Linux profile declares the newest glibc its bundles may "
                                     "need, e.g. \"2.28\" (torch's manylinux_2_28 wheels)")
    if not _GLIBC.match(floor):
        raise t.error("glibc_floor", f"is {floor!r}; expected a glibc version like \"2.28\"")
    if container and (" " in container or container != container.strip()):
        raise t.error("container", f"is {container!r}; expected an image reference")
    m = _MANYLINUX.search(container)
    if m is not None:
        built_for = (int(m.group(1)), int(m.group(2)))
        if built_for > _release(floor):
            raise t.error("container", f"builds for glibc {built_for[0]}.{built_for[1]}, above glibc_floor "
                                       f"{floor}: its bundles could not meet the floor")
        if {"x86_64": "x86_64", "aarch64": "arm64"}[m.group(3)] != host_arch:
            raise t.error("container", f"is a {m.group(3)} image but host_arch is {host_arch!r}")
    return floor, container


def _pythons(t: Table, default: str) -> tuple[str, ...]:
    """``pythons``: ascending ``3.N`` versions that hold the default ``python``."""
    if not _PYTHON.match(default):
        raise t.error("python", f"is {default!r}; expected a Python release like 3.11")
    values = t.strings("pythons", (default,))
    bad = [v for v in values if not _PYTHON.match(v)]
    if bad:
        raise t.error("pythons", f"names {bad[0]!r}; expected Python releases like 3.12")
    if list(values) != sorted(dict.fromkeys(values), key=lambda v: int(v.split(".")[1])):
        raise t.error("pythons", f"is {list(values)}; list each release once, in ascending order")
    if default not in values:
        raise t.error("pythons", f"is {list(values)} without the default python {default!r}")
    return tuple(values)


def _closure(ct: Table, *, accelerator: str, torch: TorchSpec, ort: OnnxRuntimeSpec) -> ClosureSpec:
    """``[closure]``; the declared CUDA/cuDNN majors must be what torch and onnxruntime link against."""
    cuda_major = ct.opt("cuda_major", int, None)
    cudnn_major = ct.opt("cudnn_major", int, None)
    dlopen = []
    for i, item in enumerate(ct.opt("dlopen", list, [])):
        it = Table(item, ct.path, f"{ct.key('dlopen')}[{i}]")
        module = it.take("module", (str, list))
        modules = [module] if isinstance(module, str) else module
        if not modules or not all(isinstance(m, str) and m for m in modules):
            raise it.error("module", f"is {module!r}; expected an import name or a list of them")
        entry = DlopenLib(lib=it.take("lib", str), by=it.take("by", str), at=it.take("at", str),
                          modules=tuple(modules), preload=it.opt("preload", bool, False))
        it.done()
        for key in ("lib", "by", "at"):
            value = getattr(entry, key)
            if value.startswith("/") or ".." in value.split("/") or "\\" in value:
                raise it.error(key, f"is {value!r}; expected a path relative to the bundle's _internal/")
        if "/" in entry.lib:
            raise it.error("lib", f"is {entry.lib!r}; expected the bare name dlopen is called with")
        dlopen.append(entry)
    optional = ct.strings("optional", ())
    ct.done()
    if accelerator != "cuda":
        for key, value in (("cuda_major", cuda_major), ("cudnn_major", cudnn_major)):
            if value is not None:
                raise ct.error(key, f"is set but accelerator is {accelerator!r}; "
                                    "CUDA majors are set only for cuda profiles")
        return ClosureSpec(dlopen=tuple(dlopen), optional=optional)
    if cuda_major is None or cudnn_major is None:
        raise ct.error("cuda_major" if cuda_major is None else "cudnn_major",
                       "is missing; a cuda profile declares the CUDA and cuDNN majors its libraries link against")
    torch_cuda = int(torch.cuda.split(".")[0])
    if cuda_major != torch_cuda:
        raise ct.error("cuda_major", f"is {cuda_major} but torch.cuda is {torch.cuda!r}")
    torch_cudnn = torch_cudnn_major(torch.version)
    if torch_cudnn is not None and cudnn_major != torch_cudnn:
        raise ct.error("cudnn_major",
                       f"is {cudnn_major} but torch {torch.version}'s CUDA wheels bring cuDNN {torch_cudnn}")
    if ort.package == "onnxruntime-gpu" and "CUDAExecutionProvider" in ort.providers:
        majors = onnxruntime_gpu_majors(ort.version)
        if majors is None:
            raise ct.error("cuda_major", f"cannot be checked: onnxruntime-gpu {ort.version} is older than "
                                         "the build table in src/mlfreeze/platforms/profiles.py")
        if majors != (cuda_major, cudnn_major):
            raise ct.error("cudnn_major" if majors[0] == cuda_major else "cuda_major",
                           f"declares CUDA {cuda_major} + cuDNN {cudnn_major}, but onnxruntime-gpu {ort.version}'s "
                           f"CUDA provider needs CUDA {majors[0]} + cuDNN {majors[1]}: the CUDA provider could not "
                           "load on a user's GPU; pin a matching onnxruntime-gpu, or declare only "
                           "CPUExecutionProvider (with package onnxruntime) for faces on this profile")
    return ClosureSpec(cuda_major=cuda_major, cudnn_major=cudnn_major, dlopen=tuple(dlopen), optional=optional)


@cache
def all_profiles(directory: Path = PROFILE_DIR) -> dict[str, Profile]:
    """Every profile in ``directory``, by name, sorted by name."""
    files = sorted(p for p in directory.glob("*.toml") if p.name != "stack.toml")
    if not files:
        raise ConfigError(f"{directory}: no platform profiles (*.toml) found")
    profiles = {p.name: p for p in map(load_profile_file, files)}
    sessions: dict[str, str] = {}
    for p in profiles.values():
        if p.session in sessions:
            raise ConfigError(f"{p.path}: key 'session' {p.session!r} is also used by {sessions[p.session]}")
        sessions[p.session] = p.name
    return profiles


def load_profile(name: str, directory: Path = PROFILE_DIR) -> Profile:
    profiles = all_profiles(directory)
    if name not in profiles:
        raise UsageError(f"unknown platform {name!r}; known: {', '.join(profiles)}")
    return profiles[name]


@cache
def load_stack(path: Path = PROFILE_DIR / "stack.toml") -> Stack:
    t = Table(read_toml(path), path)
    families = _families(t.sub("families"))
    bt = t.sub("base")
    base = bt.strings("requirements")
    bt.done()
    parts: dict[str, StackPart] = {}
    pt = t.sub("parts")
    for name, raw in pt.rest().items():
        p = Table(raw, path, f"parts.{name}")
        parts[name] = StackPart(name=name, torch=p.opt("torch", bool, False),
                                onnxruntime=p.opt("onnxruntime", bool, False),
                                requirements=p.strings("requirements", ()), no_deps=p.strings("no_deps", ()),
                                hiddenimports=p.strings("hiddenimports", ()), excludes=p.strings("excludes", ()))
        p.done()
    t.done()
    stack = Stack(base=base, parts=parts, families=families)
    for req in stack.requirements + stack.no_deps:
        if stack.family_of(requirement_name(req)) == "onnxruntime":
            raise ConfigError(f"{path}: {req!r}: onnxruntime comes from the profile, never from the stack")
    names = [requirement_name(r) for r in stack.requirements + stack.no_deps + stack.no_deps_requirements]
    for module, found in family_mixes(names, families).items():
        raise ConfigError(f"{path}: the stack names {' and '.join(found)}, which both install the {module} "
                          "package (key 'families'); keep one")
    return stack


def _families(t: Table) -> dict[str, tuple[str, ...]]:
    """``[families]``: import package -> its distributions (normalised names, two or more, each
    in one family only, every onnxruntime distribution a profile may name in ``onnxruntime``)."""
    families: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    raw = t.rest()
    t = Table(raw, t.path, t.where)
    for module in raw:
        members = t.strings(module)
        if len(members) < 2:
            raise t.error(module, "must list at least two distributions (a family of one cannot mix)")
        for m in members:
            if m != canonical_name(m):
                raise t.error(module, f"names {m!r}; write the normalised name {canonical_name(m)!r}")
            if m in owner:
                raise t.error(module, f"names {m!r}, already in family {owner[m]!r}")
            owner[m] = module
        families[module] = members
    t.done()
    missing = set(ONNXRUNTIME_DISTS) - set(families.get("onnxruntime", ()))
    if missing:
        raise t.error("onnxruntime", f"must list every onnxruntime distribution a profile may name "
                                     f"(missing {', '.join(sorted(missing))})")
    return families
