"""Entry point for ``python -m photo_search`` and for the PyInstaller-frozen executable.

PyInstaller runs this file as a script (``__package__`` is empty), so the import is
absolute. When run as a plain script from a source checkout, the folder holding the
package is put on ``sys.path`` first, and mlfreeze's runtime package (``mlfreeze_runtime``,
which the app loads its models through) is mapped from the checkout when it is not installed.
"""

from __future__ import annotations

import sys

if not __package__ and not getattr(sys, "frozen", False):  # pragma: no cover - script mode from a checkout
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if not getattr(sys, "frozen", False):  # pragma: no cover - from a checkout where mlfreeze is not installed
    import importlib.util
    from pathlib import Path

    _checkout = Path(__file__).resolve().parents[2]
    if importlib.util.find_spec("mlfreeze_runtime") is None and (_checkout / "builder" / "_checkout.py").is_file():
        sys.path.insert(0, str(_checkout))
        from builder._checkout import activate

        activate()  # the runtime package from the checkout (runtime/ is mlfreeze_runtime)

from photo_search.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
