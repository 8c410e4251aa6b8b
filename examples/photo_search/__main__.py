"""Entry point for ``python -m photo_search`` (with ``examples/`` on the path and mlfreeze
installed) and for the PyInstaller-frozen executable.

PyInstaller runs this file as a script (``__package__`` is empty), so the import is
absolute; the build puts ``examples/`` on its search path (pathex).
"""

from __future__ import annotations

import sys

from photo_search.cli import main

if __name__ == "__main__":
    sys.exit(main())
