"""A hidden import PyInstaller would not find fails the freeze (exit 4) before PyInstaller runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlfreeze.bundle.freeze import check_hidden_imports
from mlfreeze.errors import FreezeError


def test_importable_modules_pass_and_pathex_counts(tmp_path: Path) -> None:
    (tmp_path / "myplugin_x1.py").write_text("VALUE = 1\n")
    check_hidden_imports(["json", "mlfreeze_runtime", "myplugin_x1"], [str(tmp_path)])
    with pytest.raises(FreezeError, match="myplugin_x1") as info:
        check_hidden_imports(["json", "myplugin_x1"], [])  # not on the freeze's path
    assert info.value.exit_code == 4 and "nothing was frozen" in info.value.message


def test_a_module_only_an_import_hook_provides_is_refused(tmp_path: Path) -> None:
    # a stand-in for setuptools' default editable finder: a meta-path hook, not a sys.path entry
    (tmp_path / "hooked.py").write_text(
        "import importlib.abc, importlib.machinery, sys\n"
        "class F(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        return importlib.machinery.ModuleSpec(name, None) if name == 'hooked_only_x1' else None\n"
        "sys.meta_path.insert(0, F())\n"
        "code = sys.argv[2]\n"
        "sys.argv = ['-c', *sys.argv[3:]]\n"
        "exec(compile(code, '<string>', 'exec'), {'__name__': '__main__'})\n")
    (tmp_path / "python").write_text(f'#!/bin/sh\nexec {sys.executable} {tmp_path / "hooked.py"} "$@"\n')
    (tmp_path / "python").chmod(0o755)
    with pytest.raises(FreezeError, match="hooked_only_x1 are importable only through an import hook"):
        check_hidden_imports(["json", "hooked_only_x1"], [], python=str(tmp_path / "python"))
