"""The waste finder: duplicates, triton, CUDA in CPU builds, unloaded model files, ELF symbols."""

from __future__ import annotations

import struct
from pathlib import Path

from test_sizes_scan import DUP, make_bundle

from mlfreeze.sizes.scan import scan
from mlfreeze.sizes.waste import duplicates, elf_strippable, find_waste


def elf64(sections: dict[str, int]) -> bytes:
    """A little-endian ELF64 file with the named sections (contents zero), headers at the end."""
    names = b"\0" + b"".join(n.encode() + b"\0" for n in [".shstrtab", *sections])
    body = bytearray(64) + names
    offsets = {".shstrtab": (64, len(names))}
    for n, size in sections.items():
        offsets[n] = (len(body), size)
        body += bytes(size)
    shoff = len(body)
    headers = [bytes(64)]
    pos = 1
    for n in [".shstrtab", *sections]:
        off, size = offsets[n]
        headers.append(struct.pack("<IIQQQQIIQQ", pos, 1, 0, 0, off, size, 0, 0, 1, 0))
        pos += len(n) + 1
    body += b"".join(headers)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, 64, 56, 0, 64, len(headers), 1)
    body[:64] = header
    return bytes(body)


def test_elf_symbols_are_found_by_section_headers(tmp_path: Path) -> None:
    unstripped = tmp_path / "libu.so"
    unstripped.write_bytes(elf64({".text": 5000, ".symtab": 1200, ".strtab": 800, ".debug_info": 3000}))
    stripped = tmp_path / "libs.so"
    stripped.write_bytes(elf64({".text": 5000, ".dynsym": 300, ".dynstr": 200}))
    notelf = tmp_path / "x.so"
    notelf.write_bytes(b"MZ" + bytes(5000))
    assert elf_strippable(unstripped) == 1200 + 800 + 3000
    assert elf_strippable(stripped) == 0
    assert elf_strippable(notelf) == 0


def test_findings_name_the_bytes_they_would_save(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    (bundle / "_internal/torch/lib/libsym.so").write_bytes(elf64({".text": 9000, ".symtab": 4096, ".strtab": 1000}))
    waste = find_waste(scan(bundle))
    by_rule = {f.rule: f for f in waste.findings}
    assert by_rule["triton"].bytes == 700_000 and by_rule["triton"].files == 1
    assert by_rule["duplicate"].bytes == 200_000
    assert by_rule["duplicate"].paths == (DUP[1],) and DUP[0] in by_rule["duplicate"].why
    assert by_rule["unloaded-model-files"].paths == ("models/demo-face/2d106det.onnx",)
    assert by_rule["unstripped-symbols"].bytes == 5096
    assert "cuda-in-cpu-build" not in by_rule  # a cuda build needs its CUDA libraries
    assert waste.total == 700_000 + 200_000 + 50_000 + 5096


def test_unstripped_symbols_row_says_what_the_cuda_libraries_hold(tmp_path: Path) -> None:
    """The freeze strips everything but the CUDA libraries (and auditwheel's copies): the row names both."""
    bundle = make_bundle(tmp_path)
    (bundle / "_internal/torch/lib/libtorch_cuda.so").write_bytes(elf64({".text": 9000, ".symtab": 300_000}))
    (bundle / "_internal/nvidia/nccl/lib").mkdir(parents=True, exist_ok=True)
    (bundle / "_internal/nvidia/nccl/lib/libnccl.so.2").write_bytes(elf64({".text": 9000, ".symtab": 200_000}))
    (bundle / "_internal/numpy.libs").mkdir(exist_ok=True)
    (bundle / "_internal/numpy.libs/libgfortran-040039e1.so.5").write_bytes(elf64({".text": 9000, ".symtab": 5000}))
    (bundle / "_internal/torch/lib/libsym.so").write_bytes(elf64({".text": 9000, ".symtab": 4096, ".strtab": 1000}))
    row = {f.rule: f for f in find_waste(scan(bundle)).findings}["unstripped-symbols"]
    assert row.bytes == 300_000 + 200_000 + 5000 + 5096
    assert "488.3 KiB in CUDA libraries, left unstripped by the freeze until a frozen self-test on a CUDA GPU" \
        in row.why, row.why
    assert "4.9 KiB in auditwheel's patched copies" in row.why


def test_cuda_libraries_in_a_cpu_build_are_waste(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, accelerator="cpu")
    by_rule = {f.rule: f for f in find_waste(scan(bundle)).findings}
    assert by_rule["cuda-in-cpu-build"].bytes == 2_000_000 + 1_500_000


def test_duplicates_need_identical_bytes_not_just_the_same_size(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in "abc")
    data = bytes(range(256)) * 2000  # 512,000 bytes: partial hash, then full hash
    a.write_bytes(data)
    b.write_bytes(data)
    c.write_bytes(data[:-1] + b"\x01")  # same size, same head and tail windows? last byte differs
    d = tmp_path / "d"
    d.write_bytes(data[:300_000] + b"\x02" + data[300_001:])  # differs only in the middle
    groups, read = duplicates(tmp_path, scan(tmp_path).files)
    assert groups == [["a", "b"]]
    assert read == 4 * 128 * 1024 + 3 * len(data)  # partial for all four; full for a, b, d
