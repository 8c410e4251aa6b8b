"""Which NVIDIA GPUs a variant has kernels for: its CUDA compute capabilities (``sm_80``, ...).

Recorded in BUILD-INFO (``cuda_archs``) by the freeze stage and copied into the update index by
``mlfreeze publish``, so ``<app>-update`` never installs a CUDA variant on a GPU it has no kernels
for (an old GPU on a new driver).

- full: ``torch.cuda.get_arch_list()`` of the build environment (torch's compiled-in
  TORCH_CUDA_ARCH_LIST; it needs no GPU).
- slim: read from the CUDA execution provider the bundle ships
  (``libonnxruntime_providers_cuda.so``/``.dll``): its ``.nv_fatbin`` section (ELF) or
  ``.nv_fatb`` (PE) holds one cubin per architecture, each behind a fatbin entry header whose
  ``arch`` field is the compute capability times ten (sm_86 -> 86). onnxruntime has no Python
  API for the list. PTX-only entries (kind 1) are recorded as ``compute_<cc>``.
"""

from __future__ import annotations

import struct
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
_KIND = {1: "compute", 2: "sm"}
PROVIDER_GLOBS = ("onnxruntime/capi/libonnxruntime_providers_cuda.so",
                  "onnxruntime/capi/onnxruntime_providers_cuda.dll")


def torch_arch_list() -> list[str]:
    """``torch.cuda.get_arch_list()`` of this environment ([] for a CPU-only torch)."""
    import torch

    return list(torch.cuda.get_arch_list())


def fatbin_archs(data: bytes) -> list[str]:
    """The architectures of every entry in a fatbin section's bytes, sorted by capability.

    Layout (little-endian): a container header (u32 magic 0xBA55ED50, u16 version, u16 header
    size, u64 payload size) followed by entries (u16 kind, u16, u32 header size, u64 payload
    size, ..., u32 arch at offset 28); containers repeat. ValueError when no container is found."""
    found: set[tuple[int, str]] = set()
    pos, containers = 0, 0
    while pos + 16 <= len(data):
        magic, _, header, size = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # containers are 8-byte aligned
            continue
        containers += 1
        entry, end = pos + header, min(pos + header + size, len(data))
        while entry + 32 <= end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            if kind in _KIND and arch:
                found.add((arch, f"{_KIND[kind]}_{arch}"))
            if entry_header == 0:
                break
            entry += entry_header + payload
        pos = max(end, pos + 8)
    if not containers:
        raise ValueError("no fatbin container (magic 0xBA55ED50) in the section")
    names = [n for _, n in sorted(found)]
    return [n for n in names if n.startswith("sm_")] + [n for n in names if n.startswith("compute_")]


def library_archs(path: Path) -> list[str]:
    """The architectures of the cubins/PTX a shared library embeds (ELF ``.nv_fatbin``, PE ``.nv_fatb``)."""
    with path.open("rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic == b"\x7fELF":
            from elftools.elf.elffile import ELFFile

            section = ELFFile(f).get_section_by_name(".nv_fatbin")
            if section is None:
                raise ValueError(f"{path}: no .nv_fatbin section")
            return fatbin_archs(section.data())
    import pefile

    pe = pefile.PE(str(path), fast_load=True)
    for section in pe.sections:
        if section.Name.rstrip(b"\0") == b".nv_fatb":
            return fatbin_archs(section.get_data())
    raise ValueError(f"{path}: no .nv_fatb section")


def bundle_provider_archs(internal: Path) -> list[str]:
    """The architectures of the CUDA execution provider a bundle's ``_internal/`` ships ([] without one)."""
    for rel in PROVIDER_GLOBS:
        lib = internal / rel
        if lib.is_file():
            return library_archs(lib)
    return []


def variant_archs(*, flavor: str, accelerator: str, internal: Path) -> list[str]:
    """BUILD-INFO ``cuda_archs`` for a bundle: [] unless the profile's accelerator is CUDA."""
    if accelerator != "cuda" or flavor == "lite":
        return []
    if flavor == "full":
        return torch_arch_list()
    return bundle_provider_archs(internal)
