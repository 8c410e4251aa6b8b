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


# Windows IsProcessorFeaturePresent() feature numbers (winnt.h) -> the Linux /proc/cpuinfo flag names.
WINDOWS_FEATURES = {40: ("avx2", "fma"), 41: ("avx512f",)}  # PF_AVX2_..., PF_AVX512F_INSTRUCTIONS_AVAILABLE
# macOS sysctl machdep.cpu.{features,leaf7_features} names that differ from the Linux ones.
_SYSCTL_NAMES = {"avx1.0": "avx", "avx512fp16": "avx512_fp16", "avx512bf16": "avx512_bf16",
                 "avx512vnni": "avx512_vnni", "avx512vpopcntdq": "avx512_vpopcntdq"}


def flags_from_proc_cpuinfo(text: str) -> frozenset[str]:
    """The CPU flags of the first processor in a Linux ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``),
    lower case as the kernel writes them: ``{"avx2", "avx512f", "avx512_fp16", "sve", ...}``."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def flags_from_sysctl(text: str) -> frozenset[str]:
    """CPU flags from macOS ``sysctl machdep.cpu.features machdep.cpu.leaf7_features`` output
    (e.g. ``"FPU ... AVX1.0 ... AVX2 ... AVX512F AVX512CD AVX512FP16"``), in the Linux names."""
    out = set()
    for token in text.replace(":", " ").split():
        name = token.lower()
        if name.startswith("machdep."):
            continue
        out.add(_SYSCTL_NAMES.get(name, name))
    return frozenset(out)


def flags_from_windows(present: dict[int, bool]) -> frozenset[str]:
    """CPU flags from ``{feature number: IsProcessorFeaturePresent(number)}`` (WINDOWS_FEATURES)."""
    return frozenset(flag for number, flags in WINDOWS_FEATURES.items() if present.get(number) for flag in flags)


def cpu_flags() -> frozenset[str] | None:
    """This CPU's instruction-set flags in the Linux names (avx2, avx512f, avx512_fp16, sve, ...);
    None where they cannot be read without a subprocess. Linux: /proc/cpuinfo; macOS:
    sysctlbyname; Windows: IsProcessorFeaturePresent."""
    if sys.platform.startswith("linux"):
        try:
            return flags_from_proc_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
        except OSError:
            return None
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        return flags_from_windows({n: bool(kernel32.IsProcessorFeaturePresent(n)) for n in WINDOWS_FEATURES})
    if sys.platform == "darwin":
        return _darwin_flags()
    return None


def _darwin_flags() -> frozenset[str] | None:
    import ctypes
    import ctypes.util

    lib = ctypes.util.find_library("c")
    if lib is None:
        return None
    libc = ctypes.CDLL(lib)
    text = []
    for name in (b"machdep.cpu.features", b"machdep.cpu.leaf7_features"):
        size = ctypes.c_size_t(0)
        if libc.sysctlbyname(name, None, ctypes.byref(size), None, 0) != 0 or not size.value:
            continue  # Apple silicon has neither: no x86 flags
        buf = ctypes.create_string_buffer(size.value)
        if libc.sysctlbyname(name, buf, ctypes.byref(size), None, 0) == 0:
            text.append(buf.value.decode(errors="replace"))
    return flags_from_sysctl(" ".join(text))


def cpu_has_avx2() -> bool | None:
    """Whether the CPU has AVX2; None where this cannot be read without a subprocess."""
    flags = cpu_flags()
    return None if flags is None else "avx2" in flags
