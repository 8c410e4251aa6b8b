"""Shared-library closure on real ELF files compiled here (cc), and on the installed CUDA stack."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mlfreeze.bundle.closure import closure_findings, read_elf

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler on this host")


def _cc(*args: str | Path) -> None:
    subprocess.run([CC, *map(str, args)], check=True, capture_output=True)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A tiny onedir layout: app -> _internal/a/liba.so -> _internal/b/libb.so.1 (RUNPATH $ORIGIN/../b)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "b.c").write_text("int b(void) { return 2; }\n")
    (src / "a.c").write_text("int b(void);\nint a(void) { return b() + 1; }\n")
    (src / "main.c").write_text("int a(void);\nint main(void) { return a() == 3 ? 0 : 1; }\n")
    root = tmp_path / "app-1.0-linux-cpu-full"
    (root / "_internal" / "a").mkdir(parents=True)
    (root / "_internal" / "b").mkdir()
    _cc("-shared", "-fPIC", "-Wl,-soname,libb.so.1", "-o", root / "_internal" / "b" / "libb.so.1", src / "b.c")
    _cc("-shared", "-fPIC", "-Wl,-soname,liba.so", "-Wl,--enable-new-dtags", "-Wl,-rpath,$ORIGIN/../b",
        "-o", root / "_internal" / "a" / "liba.so", src / "a.c", root / "_internal" / "b" / "libb.so.1")
    _cc("-o", root / "app", src / "main.c", root / "_internal" / "a" / "liba.so",
        "-Wl,--disable-new-dtags", "-Wl,-rpath,$ORIGIN/_internal/a")
    # the loader agrees before we ask the checker
    subprocess.run([root / "app"], check=True)
    return root


def test_compiled_closure_is_complete_then_names_the_deleted_library(bundle: Path):
    liba = read_elf(bundle / "_internal" / "a" / "liba.so")
    assert liba is not None and liba.runpath == ("$ORIGIN/../b",) and "libb.so.1" in liba.needed
    app = read_elf(bundle / "app")
    assert app is not None and app.rpath == ("$ORIGIN/_internal/a",) and app.runpath == ()
    assert closure_findings(bundle, None) == []
    (bundle / "_internal" / "b" / "libb.so.1").unlink()
    assert subprocess.run([bundle / "app"], capture_output=True).returncode != 0  # the loader fails too
    assert closure_findings(bundle, None) == [
        "_internal/a/liba.so: needs libb.so.1, which is neither in the bundle where the loader looks "
        "nor a system library"]


def test_a_moved_library_is_found_through_ld_library_path_like_the_bootloader_sets(bundle: Path):
    (bundle / "_internal" / "b" / "libb.so.1").rename(bundle / "_internal" / "libb.so.1")
    assert closure_findings(bundle, None) == []  # _internal/ is on LD_LIBRARY_PATH in a frozen app
    env = {"LD_LIBRARY_PATH": str(bundle / "_internal")}
    assert subprocess.run([bundle / "app"], env=env).returncode == 0
