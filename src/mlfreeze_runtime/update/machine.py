"""What this machine has, read without torch: NVIDIA GPUs and driver, Apple Silicon, Rosetta 2.

NVIDIA: the driver's own library ``libnvidia-ml`` (NVML, through ctypes: nvmlInit_v2,
nvmlSystemGetDriverVersion, nvmlDeviceGetCount_v2, nvmlDeviceGetHandleByIndex_v2,
nvmlDeviceGetName, nvmlDeviceGetCudaComputeCapability), else
``nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader``
(compute_cap needs driver >= 510). glibc (Linux): ``os.confstr("CS_GNU_LIBC_VERSION")``.
Apple: ``sysctlbyname("hw.optional.arm64")`` and
``sysctl.proc_translated`` (1 when this process runs under Rosetta 2) through libc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os as _os
import platform
import shutil
import sys
from collections.abc import Callable

from mlfreeze_runtime.update import proc
from mlfreeze_runtime.update.variants import Gpu, Machine

NVML_NAMES = {"linux": ("libnvidia-ml.so.1", "libnvidia-ml.so"), "windows": ("nvml.dll",), "macos": ()}


def os_name(system: str | None = None) -> str:
    """linux | macos | windows from ``platform.system()``."""
    s = (system or platform.system()).lower()
    return {"darwin": "macos", "windows": "windows"}.get(s, "linux")


def arch_name(machine: str | None = None) -> str:
    """x86_64 | arm64 from ``platform.machine()`` (AMD64, aarch64 and arm64 folded)."""
    m = (machine or platform.machine()).lower()
    return "arm64" if m in ("arm64", "aarch64") else "x86_64" if m in ("amd64", "x86_64", "x64") else m


def parse_nvidia_smi(text: str) -> tuple[str | None, tuple[Gpu, ...]]:
    """(driver version, GPUs) from ``nvidia-smi --query-gpu=name,driver_version,compute_cap
    --format=csv,noheader`` output; (None, ()) when it holds no usable row."""
    driver: str | None = None
    gpus = []
    for line in text.splitlines():
        cols = [c.strip() for c in line.split(",")]
        if len(cols) != 3 or not cols[1][:1].isdigit() or not cols[2][:1].isdigit():
            continue
        driver = driver or cols[1]
        gpus.append(Gpu(name=cols[0], compute_capability=cols[2]))
    return driver, tuple(gpus)


def _nvml(os: str) -> tuple[str | None, tuple[Gpu, ...]] | None:
    for name in NVML_NAMES.get(os, ()):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.nvmlInit_v2() != 0:
                return None
            buf = ctypes.create_string_buffer(96)
            if lib.nvmlSystemGetDriverVersion(buf, 96) != 0:
                return None
            driver = buf.value.decode()
            count = ctypes.c_uint(0)
            lib.nvmlDeviceGetCount_v2(ctypes.byref(count))
            gpus = []
            for i in range(count.value):
                handle = ctypes.c_void_p()
                if lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle)) != 0:
                    continue
                major, minor = ctypes.c_int(), ctypes.c_int()
                if lib.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)) != 0:
                    continue
                gname = ctypes.create_string_buffer(96)
                lib.nvmlDeviceGetName(handle, gname, 96)
                gpus.append(Gpu(name=gname.value.decode(errors="replace"),
                                compute_capability=f"{major.value}.{minor.value}"))
            lib.nvmlShutdown()
            return driver, tuple(gpus)
        except (AttributeError, OSError):
            return None
    return None


def _nvidia_smi() -> tuple[str | None, tuple[Gpu, ...]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, ()
    done = proc.run([exe, "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"], timeout=20)
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else (None, ())


def _sysctl_int(name: str) -> int | None:
    libc_path = ctypes.util.find_library("c")
    if not libc_path:
        return None
    libc = ctypes.CDLL(libc_path)
    value = ctypes.c_int(0)
    size = ctypes.c_size_t(ctypes.sizeof(value))
    if libc.sysctlbyname(name.encode(), ctypes.byref(value), ctypes.byref(size), None, 0) != 0:
        return None
    return value.value


def glibc_version(confstr: Callable[[str], str | None] | None = None) -> str | None:
    """The C library's glibc version ("2.31"), None where it is not glibc (musl, macOS, Windows)."""
    try:
        text = (confstr or _os.confstr)("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        return None
    name, _, version = text.partition(" ")
    return version if name == "glibc" and version[:1].isdigit() else None


def detect(*, sysctl: Callable[[str], int | None] | None = None) -> Machine:
    """This machine, as :func:`variants.choose_variant` needs it (never raises)."""
    os = os_name()
    arch = arch_name()
    if os == "macos":
        read = sysctl or _sysctl_int
        apple = read("hw.optional.arm64") == 1
        rosetta = read("sysctl.proc_translated") == 1
        return Machine(os=os, arch="arm64" if apple else arch, apple_silicon=apple, rosetta=rosetta)
    found = _nvml(os)
    driver, gpus = found if found is not None and found[1] else _nvidia_smi()
    return Machine(os=os, arch=arch, gpus=gpus, nvidia_driver=driver, glibc=glibc_version() if os == "linux" else None)


def describe(m: Machine) -> str:
    """One line for ``status``: "linux x86_64, NVIDIA RTX 3090 (8.6), driver 550.54.14"."""
    parts = [f"{m.os} {m.arch}" + (f", glibc {m.glibc}" if m.glibc else "")]
    parts += [f"NVIDIA {g.name} ({g.compute_capability})" for g in m.gpus]
    if m.gpus or m.nvidia_driver:
        parts.append(f"driver {m.nvidia_driver or 'not found'}")
    if m.apple_silicon:
        parts.append("Apple Silicon" + (", this process under Rosetta 2" if m.rosetta else ""))
    if not m.gpus and not m.apple_silicon:
        parts.append("no GPU found")
    return ", ".join(parts) + f" (python {sys.version_info.major}.{sys.version_info.minor})"
