"""The host this process runs on, in the vocabulary of the profiles.

This is the only module that reads ``sys.platform`` / ``platform.machine()``;
platform facts belong to profiles, the host is compared against them here.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlfreeze.errors import WrongHostError

if TYPE_CHECKING:
    from mlfreeze.platforms.profiles import Profile

_OS = {"linux": "linux", "darwin": "macos", "win32": "windows", "cygwin": "windows"}
_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "arm64": "arm64", "aarch64": "arm64"}


@dataclass(frozen=True, kw_only=True)
class Host:
    os: str
    arch: str

    def __str__(self) -> str:
        return f"{self.os}-{self.arch}"


def current() -> Host:
    os_name = _OS.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    return Host(os=os_name, arch=_ARCH.get(machine, machine))


def exe_suffix(os_name: str) -> str:
    """Executable file suffix on a target OS ('.exe' on Windows)."""
    return ".exe" if os_name == "windows" else ""


def require_host(profile: Profile, command: str) -> None:
    """Refuse (exit 2) to build or check ``profile`` on a host it cannot be built on."""
    host = current()
    if (host.os, host.arch) != (profile.host_os, profile.host_arch):
        raise WrongHostError(
            f"platform {profile.name} is built on {profile.host_os}-{profile.host_arch} "
            f"(runner {profile.runner}); this host is {host}, so `mlfreeze {command}` cannot run here. "
            f"To inspect its steps on this host: `mlfreeze plan --platform {profile.name}` "
            f"(or `mlfreeze build --platform {profile.name} --plan`)")


def cpu_has_avx2() -> bool | None:
    """Whether the CPU has AVX2; None where this cannot be read without a subprocess."""
    if sys.platform.startswith("linux"):
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("flags"):
                return "avx2" in line.split(":", 1)[1].split()
        return False
    if sys.platform == "win32":
        import ctypes

        return bool(ctypes.windll.kernel32.IsProcessorFeaturePresent(40))  # type: ignore[attr-defined]
    if platform.machine().lower() in ("arm64", "aarch64"):
        return False
    return None
