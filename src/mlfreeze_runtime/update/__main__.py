"""``python -m mlfreeze_runtime.update`` (what ``<app>-update`` runs)."""

from mlfreeze_runtime.update.cli import main

raise SystemExit(main())
