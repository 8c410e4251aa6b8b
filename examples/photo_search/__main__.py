"""Entry point for ``python -m photo_search`` and for the PyInstaller-frozen executable.

PyInstaller runs this file as a script (``__package__`` is empty), so the import is
absolute. When run as a plain script from a source checkout, the folder holding the
package is put on ``sys.path`` first.
"""

from __future__ import annotations

import sys

if not __package__ and not getattr(sys, "frozen", False):  # pragma: no cover - script mode from a checkout
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from photo_search.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
