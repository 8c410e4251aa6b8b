"""Entry script of ``<app>-selftest``: verify/'s checks on the bundled models, bundled runtime."""

from mlfreeze_runtime.verify.selftest import main

raise SystemExit(main())
