"""freeze.strip_symbols on real ELF files: smaller, still loadable, *.libs copies and non-ELF untouched."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlfreeze.bundle.freeze import strip_symbols

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("strip") is None,
                                reason="needs Linux binutils strip")


def test_strip_symbols_shrinks_elf_keeps_it_loadable_and_skips_libs_folders(tmp_path: Path) -> None:
    import _bisect

    ext = Path(_bisect.__file__)  # an extension module of the running Python (lib-dynload)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "numpy.libs").mkdir()
    target = tmp_path / "pkg" / ext.name
    kept = tmp_path / "numpy.libs" / ext.name
    shutil.copyfile(ext, target)
    shutil.copyfile(ext, kept)
    grafted = tmp_path / "libgfortran-040039e1-0352e75f.so.5.0.0"  # auditwheel's name for a grafted copy
    shutil.copyfile(ext, grafted)
    (tmp_path / "pkg" / "data.bin").write_bytes(b"\x7fELx not an ELF")
    saved = strip_symbols(tmp_path)
    assert saved > 0 and target.stat().st_size == ext.stat().st_size - saved
    assert kept.read_bytes() == ext.read_bytes() == grafted.read_bytes()
    assert (tmp_path / "pkg" / "data.bin").read_bytes() == b"\x7fELx not an ELF"
    name = ext.name.split(".")[0]
    code = (f"import importlib.util as u; s = u.spec_from_file_location({name!r}, {str(target)!r}); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.__file__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == str(target), done.stderr


def test_cuda_libraries_are_left_unstripped(tmp_path: Path) -> None:
    """A CPU host cannot prove a stripped CUDA library: those matching CUDA_UNSTRIPPED keep their symbols."""
    import _bisect

    from mlfreeze.bundle.freeze import CUDA_UNSTRIPPED

    ext = Path(_bisect.__file__)
    cuda = ["nvidia/cu13/lib/libcublas.so.13", "torch/lib/libtorch_cuda.so", "torch/lib/libc10_cuda.so",
            "libcudart.so.13", "onnxruntime/capi/libonnxruntime_providers_cuda.so", "libnvrtc-builtins.so.13.0"]
    other = ["torch/lib/libtorch_cpu.so", "libcurl.so.4", "libnumpy_helper.so"]
    for rel in cuda + other:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ext, tmp_path / rel)
    saved = strip_symbols(tmp_path, keep=CUDA_UNSTRIPPED)
    assert saved > 0
    assert [r for r in cuda if (tmp_path / r).read_bytes() != ext.read_bytes()] == []
    assert [r for r in other if (tmp_path / r).read_bytes() == ext.read_bytes()] == []
