"""Entry script of ``<app>-update``: install, update, roll back and check this app side by side
(mlfreeze_runtime.update.cli). Frozen from its own Analysis, so it carries the updater and its
signature stack (tuf, securesystemslib, cryptography) without the app's libraries."""

from mlfreeze_runtime.update.cli import main

raise SystemExit(main())
