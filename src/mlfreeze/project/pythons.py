"""The project's build interpreter: which Python a profile's build of this project runs on.

A profile's ``python`` is a default and its ``pythons`` the releases its pinned torch and
onnxruntime have wheels for. The project decides among them:

1. ``[tool.mlfreeze] python = "3.12"``: that release (it must be one of the profile's and
   satisfy ``requires-python``);
2. else the profile's default, when the project's ``[project] requires-python`` admits it;
3. else the supported release nearest above the default that ``requires-python`` admits, else the
   nearest below.

A ``requires-python`` that admits none of the profile's releases is a ConfigError (exit 2) naming
both, raised by :func:`build_python` before anything is resolved or installed. Pure: reads the
already-loaded config and the profile only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from mlfreeze.errors import ConfigError
from mlfreeze.platforms.profiles import Profile
from mlfreeze.project.config import ProjectConfig

PATCHES = range(0, 50)  # a release 3.N is admitted when requires-python admits any 3.N.x


@dataclass(frozen=True, kw_only=True)
class BuildPython:
    """The chosen release (``"3.12"``) and why, in words (``"requires-python >=3.12"``)."""

    version: str
    reason: str


def specifier(value: str, where: str) -> SpecifierSet:
    """``requires-python`` parsed; ConfigError naming ``where`` when it is not a PEP 440 specifier."""
    try:
        return SpecifierSet(value)
    except InvalidSpecifier:
        raise ConfigError(f"{where} is {value!r}, not a version specifier such as '>=3.11'") from None


def admits(spec: SpecifierSet, release: str) -> bool:
    """Whether ``spec`` admits some patch release of ``release`` (``"3.12"``: 3.12.0 ... 3.12.49)."""
    return any(spec.contains(f"{release}.{patch}", prereleases=True) for patch in PATCHES)


def _order(profile: Profile) -> list[str]:
    """The profile's releases, the default first, then those above it ascending, then those below descending."""
    supported = list(profile.supported_pythons)
    i = supported.index(profile.python) if profile.python in supported else 0
    return [supported[i], *supported[i + 1:], *reversed(supported[:i])]


def accepts(config: ProjectConfig, release: str) -> bool:
    """Whether the project accepts Python ``release`` ("3.13"): its [tool.mlfreeze] python, else its requires-python."""
    if config.python:
        return release == config.python
    spec = specifier(config.requires_python, f"{config.pyproject}: key 'project.requires-python'")
    return admits(spec, release)


def build_python(config: ProjectConfig, profile: Profile) -> BuildPython:
    """The Python a build of ``config`` for ``profile`` runs on (module docstring).
    ConfigError (exit 2) when the project's constraints leave none of the profile's releases."""
    return choose(profile, requires_python=config.requires_python, python=config.python, pyproject=config.pyproject)


def choose(profile: Profile, *, requires_python: str, python: str | None, pyproject: Path) -> BuildPython:
    """:func:`build_python` from the values themselves (``mlfreeze init`` calls it before it writes
    anything): ``requires_python`` (``""``: any), ``python`` (``[tool.mlfreeze] python`` or None)."""
    supported = profile.supported_pythons
    where = f"{pyproject}: key 'project.requires-python'"
    spec = specifier(requires_python, where) if requires_python else SpecifierSet()
    if python:
        if python not in supported:
            raise ConfigError(f"{pyproject}: key 'tool.mlfreeze.python' is {python!r}, which profile "
                              f"{profile.name} does not support (its torch and onnxruntime have wheels for "
                              f"{', '.join(supported)}); pick one of those or another profile")
        if not admits(spec, python):
            raise ConfigError(f"{pyproject}: key 'tool.mlfreeze.python' is {python!r}, which "
                              f"requires-python {requires_python!r} excludes; make them agree")
        return BuildPython(version=python, reason="[tool.mlfreeze] python")
    for release in _order(profile):
        if admits(spec, release):
            reason = (f"the default of profile {profile.name}" if release == profile.python else
                      f"requires-python {requires_python} excludes the profile's default {profile.python}")
            return BuildPython(version=release, reason=reason)
    raise ConfigError(f"{where} is {requires_python!r}, which excludes every Python profile {profile.name} "
                      f"supports ({', '.join(supported)}: its torch {profile.torch.version} and "
                      f"{profile.onnxruntime.package} {profile.onnxruntime.version} have wheels for those); widen "
                      "requires-python or build another profile")
