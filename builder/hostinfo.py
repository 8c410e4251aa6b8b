"""The host this process runs on, in the vocabulary of the profiles.

This is the only module that reads ``sys.platform`` / ``platform.machine()``;
platform facts belong to profiles, the host is compared against them here.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass

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
