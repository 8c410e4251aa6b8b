"""``python -m mlfreeze`` (installed) and ``python -m builder`` (a checkout) run the CLI."""

if __package__ == "builder":  # a source checkout, maybe not installed
    from builder._checkout import activate

    activate()

from mlfreeze.cli import main  # noqa: E402

raise SystemExit(main())
