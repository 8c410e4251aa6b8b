"""Entry script of ``<app>-selftest``: verify/'s checks on the bundled models, bundled runtime."""

from verify.selftest import main

raise SystemExit(main())
