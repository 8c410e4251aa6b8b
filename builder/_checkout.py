"""Import mlfreeze from a source checkout that is not installed.

The distribution maps repository folders onto import names (pyproject.toml
``[tool.setuptools.package-dir]``): ``builder/`` is ``mlfreeze``, ``platforms/`` is
``mlfreeze.platforms``, ``specs/`` is ``mlfreeze.specs``, ``verify/`` is
``mlfreeze_runtime.verify``. An installed mlfreeze (editable or not) needs nothing from
here; ``python -m builder`` and the repository's noxfile call :func:`activate` so a bare
checkout resolves the same names. This is the mapping setuptools' editable finder does,
written out because that finder exists only after ``pip install -e``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {
    "mlfreeze": ROOT / "builder",
    "mlfreeze.platforms": ROOT / "platforms",
    "mlfreeze.specs": ROOT / "specs",
    "mlfreeze_runtime": ROOT / "runtime",
    "mlfreeze_runtime.verify": ROOT / "verify",
}


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        folder = PACKAGE_DIRS.get(fullname)
        if folder is None:
            return None
        init = folder / "__init__.py"
        return importlib.util.spec_from_file_location(fullname, init, submodule_search_locations=[str(folder)])


def activate() -> None:
    """Make ``mlfreeze`` and ``mlfreeze_runtime`` importable from this checkout, if nothing else provides them."""
    if importlib.util.find_spec("mlfreeze") is not None:
        return
    if not any(isinstance(f, _CheckoutFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _CheckoutFinder())
