"""A variant's CUDA compute capabilities: fatbin headers parsed from bytes, BUILD-INFO's list
reaching the update index through publish's variant_needs (--cuda-archs still overrides)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from mlfreeze.bundle import cuda_archs
from mlfreeze.errors import ConfigError
from mlfreeze.release.publish import variant_needs


def _entry(kind: int, arch: int, payload: bytes = b"\0" * 24) -> bytes:
    header = struct.pack("<HHIQ", kind, 0x0101, 64, len(payload)) + struct.pack("<IIII", 0, 0, 0, arch)
    return header + b"\0" * (64 - len(header)) + payload


def _container(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", cuda_archs.FATBIN_MAGIC, 1, 16, len(body)) + body


def test_fatbin_archs_lists_every_cubin_and_ptx_once_sorted() -> None:
    data = b"\0" * 8 + _container(_entry(2, 86), _entry(2, 75))
    data += _container(_entry(2, 86), _entry(1, 90), _entry(2, 120))
    assert cuda_archs.fatbin_archs(data) == ["sm_75", "sm_86", "sm_120", "compute_90"]


def test_fatbin_without_a_container_is_an_error() -> None:
    with pytest.raises(ValueError, match="no fatbin container"):
        cuda_archs.fatbin_archs(b"\0" * 64)


def test_cpu_and_lite_variants_record_no_archs(tmp_path: Path) -> None:
    assert cuda_archs.variant_archs(flavor="full", accelerator="cpu", internal=tmp_path) == []
    assert cuda_archs.variant_archs(flavor="lite", accelerator="cuda", internal=tmp_path) == []
    assert cuda_archs.variant_archs(flavor="slim", accelerator="cuda", internal=tmp_path) == []  # no provider shipped


def test_publish_takes_the_archs_from_build_info_and_the_flag_overrides() -> None:
    info = {"platform": "linux-cuda", "cuda": "13.0", "cuda_archs": ["sm_80", "sm_90"]}
    assert variant_needs(info, {})["cuda_archs"] == ["sm_80", "sm_90"]
    assert variant_needs(info, {"linux-cuda": ["sm_75"]})["cuda_archs"] == ["sm_75"]
    with pytest.raises(ConfigError, match="BUILD-INFO records none"):
        variant_needs({"platform": "linux-cuda", "cuda": "13.0"}, {})
    assert variant_needs({"platform": "linux-cpu"}, {})["cuda_archs"] == []


def test_a_lite_variant_of_a_cuda_profile_needs_no_gpu() -> None:
    needs = variant_needs({"platform": "linux-cuda", "flavor": "lite", "cuda": None, "cuda_archs": []}, {})
    assert (needs["accelerator"], needs["min_driver"], needs["cuda_archs"]) == ("cpu", None, [])
    assert variant_needs({"platform": "linux-cuda", "flavor": "full", "cuda": "13.0", "cuda_archs": ["sm_80"]},
                         {})["accelerator"] == "cuda"
