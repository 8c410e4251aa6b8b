"""``python -m mlfreeze`` runs the CLI (from a checkout: ``pip install -e .`` first)."""

from mlfreeze.cli import main

raise SystemExit(main())
