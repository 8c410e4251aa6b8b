"""What a published variant needs, what a machine has, and the pure choice between them.

A release offers variants (one per platform and flavor). :func:`choose_variant` picks the best
one the machine can run and returns, with it, the reasons for every variant kept or refused
(what ``status --explain`` prints). It reads no files and starts nothing: ``machine.detect()``
supplies the :class:`Machine`.

CUDA rules applied (NVIDIA, CUDA C++ Programming Guide, "Binary Compatibility" and
"Application Compatibility"): a cubin built for ``sm_XY`` runs on a GPU of compute capability
X.Z with Z >= Y (same major only); PTX built for ``compute_XY`` is JIT-compiled by the driver
for any GPU of compute capability >= X.Y. A CUDA build also needs a driver at least as new as
its toolkit requires (``min_driver``). A Linux build needs the glibc its ELF files need (``glibc``,
the floor ``mlfreeze audit`` recorded): the dynamic loader refuses to start it on an older one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

ACCELERATOR_RANK = {"cuda": 3, "mps": 2, "cpu": 1}
FLAVOR_RANK = {"full": 3, "slim": 2, "lite": 1}
_ARCH = re.compile(r"^(sm|compute)_(\d+)(\d)[a-z]?$")


@dataclass(frozen=True, kw_only=True)
class Gpu:
    """One NVIDIA GPU: ``compute_capability`` as "major.minor" (e.g. "8.6"), ``name`` for messages."""

    name: str
    compute_capability: str


@dataclass(frozen=True, kw_only=True)
class Machine:
    """What the machine has. ``os``: linux|macos|windows; ``arch``: x86_64|arm64 (the hardware's,
    so an x86_64 process under Rosetta 2 reports arm64 with ``rosetta=True``); ``nvidia_driver``:
    the driver version ("550.54.14") or None when no NVIDIA driver answered."""

    os: str
    arch: str
    gpus: tuple[Gpu, ...] = ()
    nvidia_driver: str | None = None
    apple_silicon: bool = False
    rosetta: bool = False
    glibc: str | None = None  # Linux: the C library's version ("2.31"); None elsewhere or not glibc (musl)


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One published variant and what it needs. ``cuda_archs``: the arch list of its CUDA runtime
    (torch.cuda.get_arch_list() for full, onnxruntime-gpu's for slim), e.g. ("sm_80", "sm_86",
    "compute_90"); empty for CPU and MPS builds."""

    name: str
    version: str
    platform: str
    flavor: str
    os: str
    arch: str
    accelerator: str
    min_driver: str | None = None
    cuda_archs: tuple[str, ...] = ()
    glibc: str | None = None  # Linux: the newest glibc its files need (BUILD-INFO glibc.floor); None: no floor
    extra: dict[str, object] = field(default_factory=dict, compare=False, hash=False)


def version_tuple(text: str) -> tuple[int, ...]:
    """"550.54.14" -> (550, 54, 14); ValueError on anything that is not dotted integers."""
    parts = text.strip().split(".")
    if not text.strip() or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a dotted version: {text!r}")
    return tuple(int(p) for p in parts)


def cc_supported(cc: str, archs: Sequence[str]) -> str | None:
    """The entry of ``archs`` that runs on compute capability ``cc`` ("8.6"), or None.

    ``sm_XY`` runs on X.Z for Z >= Y; ``compute_XY`` (PTX) on any capability >= X.Y.
    """
    major, minor = version_tuple(cc)[:2]
    sm: tuple[int, str] | None = None
    ptx: tuple[tuple[int, int], str] | None = None
    for arch in archs:
        m = _ARCH.match(arch)
        if not m:
            continue
        kind, amaj, amin = m.group(1), int(m.group(2)), int(m.group(3))
        if kind == "sm" and amaj == major and amin <= minor and (sm is None or amin > sm[0]):
            sm = (amin, arch)  # the closest cubin: highest minor not above the GPU's
        if kind == "compute" and (amaj, amin) <= (major, minor) and (ptx is None or (amaj, amin) > ptx[0]):
            ptx = ((amaj, amin), arch)
    return sm[1] if sm else ptx[1] if ptx else None


def _refusal(m: Machine, v: Variant) -> str | None:
    """Why ``m`` cannot run ``v`` (one phrase), or None when it can."""
    if v.os != m.os:
        return f"built for {v.os}, this machine runs {m.os}"
    if v.arch != m.arch:
        if m.os == "macos" and m.arch == "arm64" and v.arch == "x86_64" and v.accelerator == "cpu":
            return None  # Rosetta 2 runs x86_64 CPU code; ranked below native builds
        return f"built for {v.arch}, this machine is {m.arch}"
    if v.os == "linux" and v.glibc:
        if m.glibc is None:
            return f"needs glibc {v.glibc} or newer, and this machine's C library is not glibc"
        if version_tuple(m.glibc) < version_tuple(v.glibc):
            return f"needs glibc {v.glibc} or newer, this machine has glibc {m.glibc}"
    if v.accelerator == "mps" and not m.apple_silicon:
        return "needs Apple Silicon (Metal), not found"
    if v.accelerator == "cuda":
        if not m.gpus:
            return "needs an NVIDIA GPU, none found"
        if m.nvidia_driver is None:
            return "needs the NVIDIA driver, none answered (no libnvidia-ml, no nvidia-smi)"
        if v.min_driver and version_tuple(m.nvidia_driver) < version_tuple(v.min_driver):
            return f"needs NVIDIA driver >= {v.min_driver}, found {m.nvidia_driver}"
        if not v.cuda_archs:
            return "publishes no CUDA arch list, so no GPU can be shown to be supported"
        unsupported = [g for g in m.gpus if cc_supported(g.compute_capability, v.cuda_archs) is None]
        if len(unsupported) == len(m.gpus):
            g = unsupported[0]
            return (f"has no kernels for {g.name} (compute capability {g.compute_capability}); "
                    f"its arch list is {' '.join(v.cuda_archs)}")
    return None


def _rank(m: Machine, v: Variant, flavor_rank: dict[str, int]) -> tuple[int, int, int, tuple[int, ...]]:
    native = int(v.arch == m.arch)
    return (ACCELERATOR_RANK.get(v.accelerator, 0), native, flavor_rank.get(v.flavor, 0),
            version_tuple(v.min_driver) if v.min_driver else ())


def choose_variant(machine: Machine, variants: Sequence[Variant], *, flavor: str | None = None,
                   override: str | None = None) -> tuple[Variant | None, list[str]]:
    """The best variant ``machine`` can run and one reason line per variant considered.

    Order: CUDA > MPS > CPU, then native arch over Rosetta, then flavor (full > slim > lite),
    then the newest driver requirement that the machine still meets. ``flavor`` keeps only
    that flavor (an update keeps the installed flavor). ``override`` (``--variant``) names a
    variant or platform to take as is, even if the machine seems unable to run it; returns
    (None, reasons) when nothing fits.
    """
    reasons: list[str] = []
    if override is not None:
        hits = [v for v in variants if override in (v.name, v.platform)
                and (flavor is None or v.flavor == flavor or override == v.name)]
        if not hits:
            names = ", ".join(v.name for v in variants) or "none"
            return None, [f"--variant {override}: not in this release (it offers: {names})"]
        chosen = hits[0]
        why = _refusal(machine, chosen)
        reasons.append(f"{chosen.name}: chosen by --variant" + (f" although it {why}" if why else ""))
        return chosen, reasons
    fitting: list[Variant] = []
    refused: list[str] = []
    for v in variants:
        if flavor is not None and v.flavor != flavor:
            reasons.append(f"{v.name}: skipped, flavor {v.flavor} (installed flavor is {flavor})")
            continue
        why = _refusal(machine, v)
        if why:
            reasons.append(f"{v.name}: refused, {why}")
            refused.append(f"{v.name} {why}")
        else:
            fitting.append(v)
    if not fitting:  # the last line is the one the updater prints: it names the first refusal
        more = f"; +{len(refused) - 1} more" if len(refused) > 1 else ""
        first = f" ({refused[0]}{more})" if refused else ""
        reasons.append(f"no variant of this release runs on this machine{first}")
        return None, reasons
    fitting.sort(key=lambda v: _rank(machine, v, FLAVOR_RANK), reverse=True)
    chosen = fitting[0]
    for v in fitting:
        if v is chosen:
            reasons.append(f"{v.name}: chosen, {_why_fits(machine, v)}")
        else:
            reasons.append(f"{v.name}: runs here, ranked below {chosen.name}")
    return chosen, reasons


def _why_fits(m: Machine, v: Variant) -> str:
    if v.accelerator == "cuda":
        parts = [f"{g.name} (compute capability {g.compute_capability}) runs its "
                 f"{cc_supported(g.compute_capability, v.cuda_archs)} kernels"
                 for g in m.gpus if cc_supported(g.compute_capability, v.cuda_archs)]
        return "; ".join(parts) + f"; driver {m.nvidia_driver} >= {v.min_driver or 'any'}"
    if v.accelerator == "mps":
        return "Apple Silicon with Metal" + (" (this process runs under Rosetta 2; the native arm64 "
                                             "build is installed)" if m.rosetta else "")
    base = f"CPU build for {v.os}-{v.arch}"
    if v.arch != m.arch:
        base += " run through Rosetta 2"
    if m.gpus and m.nvidia_driver is None:
        base += "; an NVIDIA GPU is present but no driver answered"
    return base
