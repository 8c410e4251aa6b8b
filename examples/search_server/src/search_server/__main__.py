"""``python -m search_server`` and the frozen executable's entry (PyInstaller runs this file as a
script, so the import is absolute; ``src/`` is on the freeze's module path)."""

from __future__ import annotations

import sys

from search_server.cli import main

if __name__ == "__main__":
    sys.exit(main())
