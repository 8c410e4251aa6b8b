"""Spawn-safe frozen apps: ``multiprocessing.freeze_support()`` before the app runs, for every start method.

A frozen app that starts a ``spawn`` or ``forkserver`` child (the default start methods on macOS and
Windows; a torch DataLoader with workers) runs its own executable again: a spawn child with
``--multiprocessing-fork ...``, the forkserver and the resource tracker with ``-c "from
multiprocessing... import main ..."``. PyInstaller's multiprocessing runtime hook makes
``freeze_support()`` recognise all three on every OS; the bundle's first runtime hook
(src/mlfreeze/specs/hooks/rthook_freeze_support.py) calls :func:`freeze_support` so that happens
before the app's script parses ``sys.argv`` (where the child's flags made argparse exit 2).

Called from a runtime hook, not from the app's script, the child cannot re-use the script as its
``__main__`` (multiprocessing would re-run a ``<app>.py`` file that a frozen bundle does not have),
so functions defined in the entry script would be missing in the child. The freeze records the
entry script's import name (``ENTRY_MODULE_FILE`` beside the bundle's modules, the entry collected
as that module), and the child imports it as ``__mp_main__``, as multiprocessing does for ``python
-m``: its ``if __name__ == "__main__":`` block does not run, its functions are there.
Standard library only (the lite bundle imports this).
"""

from __future__ import annotations

import os
import sys

ENTRY_MODULE_FILE = "mlfreeze-entry-module.txt"  # in sys._MEIPASS (the bundle's _internal/)


def entry_module() -> str | None:
    """The entry script's import name the freeze recorded, None outside a bundle or without one."""
    base = getattr(sys, "_MEIPASS", None)
    if not base:
        return None
    try:
        with open(os.path.join(base, ENTRY_MODULE_FILE), encoding="utf-8") as f:
            name = f.read().strip()
    except OSError:
        return None
    return name if name and all(part.isidentifier() for part in name.split(".")) else None


def freeze_support(module: str | None = None) -> None:
    """Run this process's multiprocessing child work and exit when it is a spawn child, a forkserver
    or a resource tracker; return at once in the app. ``module``: the entry script's import name
    (default :func:`entry_module`), imported as the child's ``__mp_main__``."""
    import multiprocessing
    import multiprocessing.spawn as spawn

    module = module or entry_module()
    if module is not None and getattr(sys, "frozen", False):
        by_name = spawn._fixup_main_from_name  # type: ignore[attr-defined]

        def _fixup_main_from_path(main_path: str) -> None:  # the frozen script has no file: import it by name
            by_name(module)

        spawn._fixup_main_from_path = _fixup_main_from_path  # type: ignore[attr-defined]
    multiprocessing.freeze_support()
