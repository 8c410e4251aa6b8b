"""Shared-library closure (mlfreeze.bundle.closure): the loader models on small trees and real readers.

ELF resolution is tested on trees of parsed facts (the reader itself on a real library from the
installed CUDA stack, and on compiled fixtures in tests/integration/test_closure_elf.py); Mach-O
on headers built here with struct; PE on setuptools' own Windows launcher (a real PE file).
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from mlfreeze.bundle.closure import Binary, Tree, closure_findings, read_binary, read_elf, scan, tree_findings
from mlfreeze.platforms.profiles import DlopenLib, load_profile


def _tree(binaries: dict[str, Binary], extra: tuple[str, ...] = ()) -> Tree:
    return Tree(files=frozenset([*binaries, *extra]), internal="_internal", binaries=binaries)


def elf(*needed: str, rpath: tuple[str, ...] = (), runpath: tuple[str, ...] = (), soname: str = "") -> Binary:
    return Binary(format="elf", needed=needed, rpath=rpath, runpath=runpath, soname=soname)


# ---------------------------------------------------------------- ELF loader model

def test_runpath_origin_resolves_and_a_missing_library_is_named():
    tree = _tree({
        "_internal/torch/lib/libtorch_cuda.so": elf("libcublas.so.13", "libc.so.6",
                                                    runpath=("$ORIGIN/../../nvidia/cu13/lib",)),
        "_internal/nvidia/cu13/lib/libcublas.so.13": elf("libcublasLt.so.13", runpath=("$ORIGIN",)),
    })
    assert tree_findings(tree) == [
        "_internal/nvidia/cu13/lib/libcublas.so.13: needs libcublasLt.so.13, which is neither in the bundle "
        "where the loader looks nor a system library"]
    complete = _tree({**tree.binaries, "_internal/nvidia/cu13/lib/libcublasLt.so.13": elf()})
    assert tree_findings(complete) == []


def test_a_library_elsewhere_in_the_bundle_does_not_count():
    # libfoo exists, but in a directory neither RUNPATH nor LD_LIBRARY_PATH (_internal/) names.
    tree = _tree({"_internal/a/liba.so": elf("libfoo.so.1", runpath=("$ORIGIN",)),
                  "_internal/b/libfoo.so.1": elf(soname="libfoo.so.1")})
    assert [f.split(":")[0] for f in tree_findings(tree)] == ["_internal/a/liba.so"]


def test_ld_library_path_is_internal_and_rpath_comes_from_the_objects_that_need_it():
    tree = _tree({
        "_internal/libtop.so.1": elf(),
        # no RUNPATH: its own RPATH, then the RPATH of libuser (which needs it), then _internal/
        "_internal/nvidia/lib/libdep.so": elf("libtop.so.1", "libsib.so", soname="libdep.so"),
        "_internal/torch/lib/libuser.so": elf("libdep.so", rpath=("$ORIGIN/../../nvidia/lib", "$ORIGIN/../../x")),
        "_internal/x/libsib.so": elf(),
    })
    assert tree_findings(tree) == []
    # A DT_RUNPATH switches DT_RPATH off (its own and its loaders'): libsib is then not found.
    runpath = dict(tree.binaries)
    runpath["_internal/nvidia/lib/libdep.so"] = elf("libtop.so.1", "libsib.so", soname="libdep.so",
                                                    runpath=("$ORIGIN",))
    assert [f.split(": needs ")[1].split(",")[0] for f in tree_findings(_tree(runpath))] == ["libsib.so"]


def test_system_allowlist_is_the_c_library_family_and_the_driver_only():
    tree = _tree({"_internal/lib.so": elf("libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
                                          "ld-linux-x86-64.so.2", "libcuda.so.1", "libnvidia-ml.so.1",
                                          "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1")})
    missing = sorted(f.split(": needs ")[1].split(",")[0] for f in tree_findings(tree))
    assert missing == ["libgcc_s.so.1", "libstdc++.so.6", "libz.so.1"]


def test_absolute_rpath_of_the_build_machine_does_not_resolve():
    tree = _tree({"_internal/a.so": elf("libmpi.so.40", runpath=("/data/tmp/openmpi_install/lib",))},
                 extra=("data/tmp/openmpi_install/lib/libmpi.so.40",))
    assert len(tree_findings(tree)) == 1
    # a relative entry is relative to the working directory, not to the object: it does not count
    relative = _tree({"_internal/a.so": elf("libx.so", runpath=("_internal/lib",))}, extra=("_internal/lib/libx.so",))
    assert len(tree_findings(relative)) == 1
    origin = _tree({"_internal/a.so": elf("libx.so", runpath=("${ORIGIN}/lib",))}, extra=("_internal/lib/libx.so",))
    assert tree_findings(origin) == []


def test_optional_plugins_are_skipped_only_where_declared():
    trt = {"_internal/onnxruntime/capi/libonnxruntime_providers_tensorrt.so": elf("libnvinfer.so.10")}
    assert tree_findings(_tree(trt)) and not tree_findings(
        _tree(trt), optional=["onnxruntime/capi/libonnxruntime_providers_tensorrt.so"])


BUILTINS = DlopenLib(lib="libnvrtc-builtins.so.13.0", by="nvidia/cu13/lib/libnvrtc.so.13", at=".", modules=("torch",))


def test_dlopen_library_must_be_reachable_from_its_loader():
    base = {"_internal/nvidia/cu13/lib/libnvrtc.so.13": elf("libc.so.6", soname="libnvrtc.so.13")}
    missing = tree_findings(_tree(base), dlopen=[BUILTINS])
    assert missing == ["_internal/libnvrtc-builtins.so.13.0: missing: _internal/nvidia/cu13/lib/libnvrtc.so.13 loads "
                       "libnvrtc-builtins.so.13.0 with dlopen and the loader does not find it in the bundle "
                       "(declared in the profile's [closure] dlopen)"]
    present = {**base, "_internal/libnvrtc-builtins.so.13.0": elf("libstdc++.so.6")}
    # present, but its own closure is incomplete: the finding names the builtins and libstdc++
    assert tree_findings(_tree(present), dlopen=[BUILTINS]) == [
        "_internal/libnvrtc-builtins.so.13.0: needs libstdc++.so.6, which is neither in the bundle where the "
        "loader looks nor a system library"]
    present["_internal/libstdc++.so.6"] = elf("libc.so.6")
    assert tree_findings(_tree(present), dlopen=[BUILTINS]) == []
    # beside libnvrtc (no RPATH/RUNPATH) the loader would not look
    beside = {**base, "_internal/nvidia/cu13/lib/libnvrtc-builtins.so.13.0": elf()}
    assert len(tree_findings(_tree(beside), dlopen=[BUILTINS])) == 1


def test_dlopen_loader_found_by_name_where_pyinstaller_put_it_at_the_top():
    # A build whose site-packages PyInstaller does not recognise puts libnvrtc at the top of _internal/.
    top = {"_internal/libnvrtc.so.13": elf(soname="libnvrtc.so.13")}
    assert len(tree_findings(_tree(top), dlopen=[BUILTINS])) == 1
    top["_internal/libnvrtc-builtins.so.13.0"] = elf()
    assert tree_findings(_tree(top), dlopen=[BUILTINS]) == []


def test_dlopen_entries_of_a_library_the_bundle_lacks_do_not_apply():
    assert tree_findings(_tree({"_internal/app.so": elf()}), dlopen=[BUILTINS]) == []


def test_cu118_onnxruntime_gpu_118_with_cudnn9_is_caught():
    # What the linux-cu118 trap looks like in a bundle: onnxruntime-gpu 1.18's CUDA provider needs
    # cuDNN 8, torch's cu118 wheels bring cuDNN 9.
    tree = _tree({
        "_internal/onnxruntime/capi/onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so":
            elf(runpath=("$ORIGIN",)),
        "_internal/onnxruntime/capi/libonnxruntime_providers_cuda.so":
            elf("libcudnn.so.8", "libcublas.so.11", runpath=("$ORIGIN",)),
        "_internal/libcublas.so.11": elf(soname="libcublas.so.11"),
        "_internal/nvidia/cudnn/lib/libcudnn.so.9": elf(soname="libcudnn.so.9"),
        "_internal/libcudnn.so.9": elf(soname="libcudnn.so.9"),
    })
    providers = DlopenLib(lib="libonnxruntime_providers_cuda.so", by="onnxruntime/capi/onnxruntime_pybind11_state*.so",
                          at="onnxruntime/capi", modules=("onnxruntime",))
    findings = tree_findings(tree, dlopen=[providers])
    assert findings == ["_internal/onnxruntime/capi/libonnxruntime_providers_cuda.so: needs libcudnn.so.8, which is "
                        "neither in the bundle where the loader looks nor a system library"]


def test_profiles_declare_the_dlopen_libraries_of_the_cuda_stacks():
    cuda = load_profile("linux-cuda").closure
    libs = {d.lib for d in cuda.dlopen}
    assert "libnvrtc-builtins.so.13.0" in libs and "libonnxruntime_providers_cuda.so" in libs
    assert {"libcudnn_engines_runtime_compiled.so.9", "libcudnn_graph.so.9"} <= libs
    assert (cuda.cuda_major, cuda.cudnn_major) == (13, 9)
    cu118 = load_profile("linux-cu118")
    assert cu118.onnxruntime.providers == ("CPUExecutionProvider",) and cu118.onnxruntime.package == "onnxruntime"
    assert "libnvrtc-builtins.so.11.8" in {d.lib for d in cu118.closure.dlopen}


# ---------------------------------------------------------------- readers

SITE = Path(__import__("onnxruntime").__file__).resolve().parents[1]


def test_elf_reader_on_a_real_cuda_library():
    path = SITE / "nvidia" / "cu13" / "lib" / "libnvrtc-builtins.so.13.0"
    if not path.exists():
        pytest.skip("the CUDA 13 stack (nvidia/cu13) is not installed")
    b = read_elf(path)
    assert b is not None and b.format == "elf" and b.soname == "libnvrtc-builtins.so.13.0"
    assert "libstdc++.so.6" in b.needed and b.runpath == () and b.rpath == ()
    cudnn = read_elf(SITE / "nvidia" / "cudnn" / "lib" / "libcudnn_ops.so.9")
    assert cudnn is not None and "$ORIGIN/../../cu13/lib" in cudnn.runpath  # colon-separated, split


def _macho(filetype: int, commands: list[tuple[int, bytes]]) -> bytes:
    """A minimal little-endian 64-bit Mach-O: header + load commands (each padded to 8 bytes)."""
    body = b""
    for cmd, payload in commands:
        size = (8 + len(payload) + 7) // 8 * 8
        body += struct.pack("<II", cmd, size) + payload.ljust(size - 8, b"\x00")
    header = struct.pack("<IiiIIIII", 0xFEEDFACF, 0x01000007, 3, filetype, len(commands), len(body), 0, 0)
    return header + body


def _dylib(name: str) -> bytes:  # dylib_command after cmd/cmdsize: name offset, timestamp, versions
    return struct.pack("<IIII", 24, 2, 0x10000, 0x10000) + name.encode() + b"\x00"


def _rpath(path: str) -> bytes:
    return struct.pack("<I", 12) + path.encode() + b"\x00"


LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_RPATH = 0xC, 0x80000018, 0x8000001C


def test_macho_reader_and_rpath_resolution(tmp_path: Path):
    bundle = tmp_path / "app-macos"
    internal = bundle / "_internal"
    (internal / "torch" / "lib").mkdir(parents=True)
    (bundle / "app").write_bytes(_macho(2, [(LC_LOAD_DYLIB, _dylib("/usr/lib/libSystem.B.dylib")),
                                            (LC_RPATH, _rpath("@executable_path/_internal"))]))
    ext = _macho(6, [(LC_LOAD_DYLIB, _dylib("@rpath/libtorch_cpu.dylib")),
                     (LC_LOAD_DYLIB, _dylib("@loader_path/libc10.dylib")),
                     (LC_LOAD_DYLIB, _dylib("@rpath/libomp.dylib")),
                     (LC_LOAD_WEAK_DYLIB, _dylib("@rpath/libweak.dylib")),
                     (LC_LOAD_DYLIB, _dylib("/opt/homebrew/lib/libpng16.16.dylib")),
                     (LC_RPATH, _rpath("@loader_path"))])
    (internal / "torch" / "lib" / "libtorch_python.dylib").write_bytes(ext)
    (internal / "torch" / "lib" / "libtorch_cpu.dylib").write_bytes(_macho(6, []))
    (internal / "torch" / "lib" / "libc10.dylib").write_bytes(_macho(6, []))
    b = read_binary(internal / "torch" / "lib" / "libtorch_python.dylib")
    assert b is not None and b.format == "macho"
    assert b.needed == ("@rpath/libtorch_cpu.dylib", "@loader_path/libc10.dylib", "@rpath/libomp.dylib",
                        "/opt/homebrew/lib/libpng16.16.dylib")
    assert b.weak == ("@rpath/libweak.dylib",) and b.rpath == ("@loader_path",)
    needs = sorted(f.split(": needs ")[1].split(",")[0] for f in closure_findings(bundle, None))
    assert needs == ["/opt/homebrew/lib/libpng16.16.dylib", "@rpath/libomp.dylib"]
    # libomp at the top of _internal/: found through the executable's LC_RPATH
    (internal / "libomp.dylib").write_bytes(_macho(6, []))
    needs = [f.split(": needs ")[1].split(",")[0] for f in closure_findings(bundle, None)]
    assert needs == ["/opt/homebrew/lib/libpng16.16.dylib"]


def test_pe_reader_on_a_real_windows_executable(tmp_path: Path):
    launcher = Path(__import__("setuptools").__file__).resolve().parent / "cli-64.exe"
    if not launcher.exists():
        pytest.skip("setuptools' Windows launcher is not installed")
    bundle = tmp_path / "app-win"
    (bundle / "_internal").mkdir(parents=True)
    data = launcher.read_bytes()
    assert data.count(b"KERNEL32.dll") == 1
    # The same executable importing a DLL the bundle lacks: rename its KERNEL32 import in place.
    (bundle / "app.exe").write_bytes(data.replace(b"KERNEL32.dll", b"MLFZTEST.dll"))
    b = read_binary(bundle / "app.exe")
    assert b is not None and b.format == "pe" and b.executable and b.needed[0] == "MLFZTEST.dll"
    others = [n for n in b.needed[1:] if n.lower() != "vcruntime140.dll"]
    assert all(n.lower().startswith("api-ms-win-") for n in others)  # the rest are API sets (or nothing)
    findings = closure_findings(bundle, None)
    assert "app.exe: needs MLFZTEST.dll, which is neither in the bundle where the loader looks nor a system library" \
        in findings
    for name in ("mlfztest.dll", "vcruntime140.dll"):  # file names are case-insensitive; _internal/ is searched
        shutil.copy(launcher, bundle / "_internal" / name)
    assert closure_findings(bundle, None) == []


def test_scan_counts_symlinks_inside_the_bundle_only(tmp_path: Path):
    bundle = tmp_path / "b"
    (bundle / "_internal" / "sub").mkdir(parents=True)
    (bundle / "_internal" / "sub" / "libx.so.1").write_bytes(b"not an elf but a file" * 4)
    (bundle / "_internal" / "libx.so.1").symlink_to("sub/libx.so.1")
    (tmp_path / "outside.so").write_bytes(b"x")
    (bundle / "_internal" / "liby.so").symlink_to(tmp_path / "outside.so")
    tree = scan(bundle)
    assert "_internal/libx.so.1" in tree.files and "_internal/liby.so" not in tree.files
    assert tree.internal == "_internal" and tree.binaries == {}


def test_libraries_loaded_by_import_torch_satisfy_torchvision_only():
    # torchvision's ops library names torch's libraries with no RPATH to torch/lib: `import torch`
    # has loaded them (torch/_C -> libtorch_python -> libtorch, libc10). Only what torch/_C really
    # reaches counts, only for torchvision/torch objects, and a library missing from torch/lib stays a finding.
    binaries = {
        "_internal/torch/_C.cpython-311-x86_64-linux-gnu.so": elf("libtorch_python.so", runpath=("$ORIGIN/lib",)),
        "_internal/torch/lib/libtorch_python.so": elf("libtorch.so", "libc10.so", runpath=("$ORIGIN",)),
        "_internal/torch/lib/libtorch.so": elf(runpath=("$ORIGIN",)),
        "_internal/torch/lib/libc10.so": elf(soname="libc10.so"),
        "_internal/torch/lib/libcaffe2_nvrtc.so": elf(),  # loaded lazily, not by `import torch`
        "_internal/torchvision/_C_stable.so": elf("libc10.so", "libtorch.so", rpath=("/__w/_temp/conda/lib",)),
        "_internal/other/ext.so": elf("libc10.so"),
        "_internal/torchvision/late.so": elf("libcaffe2_nvrtc.so"),
    }
    assert tree_findings(_tree(binaries)) == [
        "_internal/other/ext.so: needs libc10.so, which is neither in the bundle where the loader looks nor a "
        "system library",
        "_internal/torchvision/late.so: needs libcaffe2_nvrtc.so, which is neither in the bundle where the loader "
        "looks nor a system library"]
    del binaries["_internal/torch/lib/libc10.so"]
    found = tree_findings(_tree(binaries))
    assert "_internal/torchvision/_C_stable.so: needs libc10.so, which is neither in the bundle where the loader " \
           "looks nor a system library" in found


PROVIDER = "onnxruntime/capi/libonnxruntime_providers_cuda.so"


def _preload(lib: str, at: str) -> DlopenLib:
    return DlopenLib(lib=lib, by=PROVIDER, at=at, modules=("onnxruntime",), preload=True)


def test_preloaded_libraries_satisfy_the_cuda_provider_only_when_shipped_where_they_are_loaded_from():
    # slim: no torch loads cuBLAS first; mlfreeze_runtime.device preloads it by path from nvidia/
    files = {
        f"_internal/{PROVIDER}": elf("libcublasLt.so.13", "libcublas.so.13"),
        "_internal/nvidia/cu13/lib/libcublas.so.13": elf("libcublasLt.so.13", soname="libcublas.so.13",
                                                         runpath=("$ORIGIN",)),
        "_internal/nvidia/cu13/lib/libcublasLt.so.13": elf(soname="libcublasLt.so.13"),
    }
    undeclared = sorted(f.split(": needs ")[1].split(",")[0] for f in tree_findings(_tree(files)))
    assert undeclared == ["libcublas.so.13", "libcublasLt.so.13"]  # no RUNPATH, not at the top of _internal/
    # declaring only libcublas still satisfies libcublasLt: libcublas loads it (transitively preloaded)
    assert tree_findings(_tree(files), dlopen=[_preload("libcublas.so.13", "nvidia/cu13/lib")]) == []
    # declared but not shipped: one finding naming the missing file and who needs it
    del files["_internal/nvidia/cu13/lib/libcublasLt.so.13"], files["_internal/nvidia/cu13/lib/libcublas.so.13"]
    findings = tree_findings(_tree(files), dlopen=[_preload("libcublasLt.so.13", "nvidia/cu13/lib"),
                                                   _preload("libcublas.so.13", "nvidia/cu13/lib")])
    assert [f for f in findings if "missing" in f] == [
        f"_internal/nvidia/cu13/lib/{lib}: missing: mlfreeze_runtime.device loads it by path before "
        f"_internal/{PROVIDER}, which needs it (declared in the profile's [closure] dlopen with preload = true)"
        for lib in ("libcublas.so.13", "libcublasLt.so.13")]


def test_preload_entries_of_a_bundle_without_the_provider_do_not_apply():
    entry = _preload("libcublas.so.13", "nvidia/cu13/lib")
    assert tree_findings(_tree({"_internal/app.so": elf()}), dlopen=[entry]) == []


def test_linux_cuda_preloads_what_the_onnxruntime_cuda_provider_links_and_dlopens():
    entries = [d for d in load_profile("linux-cuda").closure.dlopen if d.preload]
    assert {(d.lib, d.at) for d in entries} == {
        ("libcublasLt.so.13", "nvidia/cu13/lib"), ("libcublas.so.13", "nvidia/cu13/lib"),
        ("libcurand.so.10", "nvidia/cu13/lib"), ("libcudart.so.13", "nvidia/cu13/lib"),
        ("libcudnn.so.9", "nvidia/cudnn/lib")}
    assert all(d.by == PROVIDER for d in entries)
