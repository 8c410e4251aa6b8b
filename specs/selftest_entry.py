"""Entry script of ``<app>-selftest``: the bundled runtime's checks on the bundled models, then the
app probe of the sibling ``<app>`` (mlfreeze_runtime.verify.selftest)."""

from mlfreeze_runtime.verify.selftest import main

raise SystemExit(main())
