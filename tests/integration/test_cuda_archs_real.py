"""The compute capabilities read from the real onnxruntime-gpu CUDA provider and torch of this
environment (skipped where they are not installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mlfreeze.bundle import cuda_archs


def test_the_onnxruntime_cuda_provider_lists_its_cubins() -> None:
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None:
        pytest.skip("onnxruntime is not installed")
    site = Path(spec.origin).parent.parent
    if not any((site / g).is_file() for g in cuda_archs.PROVIDER_GLOBS):
        pytest.skip("onnxruntime has no CUDA provider here (CPU build)")
    archs = cuda_archs.bundle_provider_archs(site)
    assert archs and all(a.startswith(("sm_", "compute_")) for a in archs)
    assert len(set(archs)) == len(archs) and "sm_80" in archs  # every CUDA 12/13 build ships Ampere kernels


def test_full_variants_use_torchs_compiled_arch_list(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.backends.cuda.is_built():
        pytest.skip("CPU-only torch")
    archs = cuda_archs.variant_archs(flavor="full", accelerator="cuda", internal=tmp_path)
    assert archs == torch.cuda.get_arch_list() and archs
