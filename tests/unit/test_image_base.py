"""mlfreeze.release.imagebase: system libraries -> Debian packages, the glibc floor -> a suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfreeze.errors import UsageError
from mlfreeze.release import imagebase


def test_glibc_zlib_and_the_gcc_runtime_map_to_their_packages_the_driver_to_none() -> None:
    libs = {n: "_internal/x.so" for n in ("libc.so.6", "libm.so.6", "libpthread.so.0", "ld-linux-x86-64.so.2",
                                          "libz.so.1", "libgcc_s.so.1", "libcuda.so.1", "libnvidia-ml.so.1")}
    packages, unknown = imagebase.packages_for(libs)
    assert packages == ["base-files", "libc6", "libgcc-s1", "zlib1g"] and unknown == []


def test_an_unknown_system_library_is_reported_and_extra_packages_are_kept() -> None:
    packages, unknown = imagebase.packages_for({"libc.so.6": "a", "libfancy.so.3": "b"}, ["ca-certificates"])
    assert unknown == ["libfancy.so.3"] and "ca-certificates" in packages


@pytest.mark.parametrize(("glibc", "suite"), [((0, 0), "bookworm"), ((2, 34), "bookworm"), ((2, 36), "bookworm"),
                                              ((2, 38), "trixie"), ((2, 41), "trixie")])
def test_the_oldest_suite_whose_glibc_is_new_enough(glibc: tuple[int, int], suite: str) -> None:
    assert imagebase.pick_suite(glibc) == suite


def test_a_suite_too_old_or_no_suite_at_all_is_one_line() -> None:
    with pytest.raises(UsageError, match="needs glibc 2.38, but Debian bookworm has 2.36"):
        imagebase.pick_suite((2, 38), "bookworm")
    with pytest.raises(UsageError, match="newer than every supported Debian release"):
        imagebase.pick_suite((2, 99))
    with pytest.raises(UsageError, match="not one of"):
        imagebase.pick_suite((2, 1), "sid-ish")


def test_the_host_needs_of_this_interpreter() -> None:
    """A real ELF file (the running Python): its libc need is found and the floor is a real version."""
    import sys

    exe = Path(sys.executable).resolve()
    floor = imagebase.glibc_floor(exe)
    assert floor >= (2, 2)
    assert imagebase.glibc_floor(Path(__file__)) == (0, 0)  # not ELF


def test_dpkg_status_lists_installed_packages_only() -> None:
    text = ("Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u14\nDescription: x\n y\n\n"
            "Package: gone\nStatus: purge ok not-installed\nVersion: 1\n\n"
            "Package: zlib1g\nVersion: 1:1.2.13.dfsg-1\n")
    assert imagebase.parse_status(text) == {"libc6": "2.36-9+deb12u14", "zlib1g": "1:1.2.13.dfsg-1"}


def test_the_cache_key_depends_on_every_input() -> None:
    base = dict(suite="bookworm", arch="amd64", packages=["libc6", "zlib1g"], mirror="http://m")
    key = imagebase.cache_key(**base)
    assert key == imagebase.cache_key(**{**base, "packages": ["zlib1g", "libc6"]})
    for change in ({"suite": "trixie"}, {"arch": "arm64"}, {"packages": ["libc6"]}, {"mirror": "http://n"}):
        assert imagebase.cache_key(**{**base, **change}) != key


def test_a_missing_mmdebstrap_without_a_cached_base_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    from mlfreeze.errors import FreezeError

    monkeypatch.setattr(imagebase.shutil, "which", lambda name: None)
    with pytest.raises(FreezeError, match="mmdebstrap is not installed.*--base-tar"):
        imagebase.base_tar(suite="bookworm", arch="amd64", packages=["libc6"], cache_dir=tmp_path, epoch=0)
    assert not (tmp_path / "images").exists() or not any((tmp_path / "images").iterdir())


def test_the_bootloader_needs_the_system_zlib_even_when_internal_ships_one(tmp_path: Path, monkeypatch) -> None:
    """ld.so loads the top-level executable before the bootloader points LD_LIBRARY_PATH at
    _internal/, so _internal/libz.so.1 (collected for Python's zlib) does not serve it."""
    from mlfreeze.bundle import closure

    tree = closure.Tree(files=frozenset({"app", "_internal/libz.so.1", "_internal/ext.so", "_internal/libfoo.so"}),
                        internal="_internal",
                        binaries={"app": closure.Binary(format="elf", needed=("libz.so.1", "libc.so.6"),
                                                        executable=True),
                                  "_internal/ext.so": closure.Binary(format="elf", needed=("libz.so.1", "libm.so.6")),
                                  "_internal/libfoo.so": closure.Binary(format="elf", needed=())})
    monkeypatch.setattr(closure, "scan", lambda _bundle: tree)
    needs = imagebase.host_needs(tmp_path)
    assert needs.libraries == {"libc.so.6": "app", "libm.so.6": "_internal/ext.so", "libz.so.1": "app"}
    rpath = closure.Tree(files=tree.files | {"lib/libz.so.1"}, internal="_internal",
                         binaries={"app": closure.Binary(format="elf", needed=("libz.so.1",),
                                                         runpath=("$ORIGIN/lib",))})
    monkeypatch.setattr(closure, "scan", lambda _bundle: rpath)
    assert imagebase.host_needs(tmp_path).libraries == {}  # its own RUNPATH finds it


def test_preloaded_torch_libraries_and_optional_plugins_are_not_host_needs(tmp_path: Path, monkeypatch) -> None:
    """As the closure audit: torchvision finds libc10.so by name because `import torch` loaded it,
    and the profile's optional TensorRT provider may need a libnvinfer the host rarely has."""
    from mlfreeze.bundle import closure

    elf = closure.Binary
    tree = closure.Tree(
        files=frozenset({"app", "_internal/torch/_C.so", "_internal/torch/lib/libc10.so", "_internal/torchvision/_C.so",
                         "_internal/onnxruntime/capi/libonnxruntime_providers_tensorrt.so"}),
        internal="_internal",
        binaries={"app": elf(format="elf", needed=("libc.so.6",), executable=True),
                  "_internal/torch/_C.so": elf(format="elf", needed=("libc10.so",), runpath=("$ORIGIN/lib",)),
                  "_internal/torch/lib/libc10.so": elf(format="elf", needed=("libstdc++.so.6",), soname="libc10.so"),
                  "_internal/torchvision/_C.so": elf(format="elf", needed=("libc10.so",)),
                  "_internal/onnxruntime/capi/libonnxruntime_providers_tensorrt.so":
                      elf(format="elf", needed=("libnvinfer.so.10",))})
    monkeypatch.setattr(closure, "scan", lambda _bundle: tree)
    assert set(imagebase.host_needs(tmp_path, "linux-cuda").libraries) == {"libc.so.6", "libstdc++.so.6"}
    assert "libnvinfer.so.10" in imagebase.host_needs(tmp_path, None).libraries  # no profile: no optional globs
