"""Platform profiles: one TOML per target, loaded into frozen dataclasses.

A profile is the single source of truth for a target's torch index, CUDA flavour,
onnxruntime distribution, expected execution providers, runner label and archive format.
The nox sessions and the GitHub matrix are derived from these files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
class Profile:
    name: str
    session: str
    description: str
    host_os: str
    host_arch: str
    accelerator: str
    python: str
    runner: str
    archive_format: str
    constraints: tuple[str, ...]
    torch: TorchSpec
    onnxruntime: OnnxRuntimeSpec
    path: Path

    def torch_index(self, env: Mapping[str, str] | None = None) -> str:
        """The torch index actually used: ``MLFREEZE_TORCH_INDEX`` overrides the profile's."""
        env = os.environ if env is None else env
        return env.get(TORCH_INDEX_ENV, "") or self.torch.index_url


@dataclass(frozen=True, kw_only=True)
class StackPart:
    """One part of the stack (platforms/stack.toml ``[parts.<name>]``): clip, faces or faiss."""

    name: str
    torch: bool = False  # needs the profile's torch and torchvision
    onnxruntime: bool = False  # needs the profile's one onnxruntime distribution
    requirements: tuple[str, ...] = ()
    no_deps: tuple[str, ...] = ()  # installed with --no-deps (their requirements are listed instead)
    hiddenimports: tuple[str, ...] = ()  # collected into the bundle when the app uses the part
    excludes: tuple[str, ...] = ()  # kept out of the bundle when it does not


@dataclass(frozen=True, kw_only=True)
class Stack:
    """What a build installs besides torch and onnxruntime (platforms/stack.toml), by part."""

    base: tuple[str, ...]
    parts: Mapping[str, StackPart]

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
    t.done()
    return Profile(name=name, session=session, description=description, host_os=host_os,
                   host_arch=host_arch, accelerator=accelerator, python=python, runner=runner,
                   archive_format=archive_format, constraints=constraints, torch=torch,
                   onnxruntime=ort, path=path)


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
    stack = Stack(base=base, parts=parts)
    for req in stack.requirements + stack.no_deps:
        if req.split("<")[0].split(">")[0].split("=")[0].split(";")[0].strip() in ONNXRUNTIME_DISTS:
            raise ConfigError(f"{path}: {req!r}: onnxruntime comes from the profile, never from the stack")
    return stack
