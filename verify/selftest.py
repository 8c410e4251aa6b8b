"""``<app>-selftest``: the same gate, run inside a frozen bundle on its own ``models/``.

    <app>-selftest [--models-dir DIR] [--json] [--strict]

The models dir is ``--models-dir``, else ``$MLFREEZE_MODELS_DIR``, else ``models/`` beside the
executable when frozen. Exit 0 when every check passes, 1 when any fails (one ``FAILED`` line
per failing check, naming it: a missing model file, a missing tokenizer vocabulary, ...),
2 when there is nothing to test (no models dir / index).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mlfreeze_runtime.verify.bundle import IndexError_, read_models_index
from mlfreeze_runtime.verify.probes import PROBES_DIRNAME


def models_dir(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("MLFREEZE_MODELS_DIR")
    if env:
        return Path(env)
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve().parent / "models"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="selftest", description="Functional self-test of the bundled models.")
    ap.add_argument("--models-dir", default=None, metavar="DIR")
    ap.add_argument("--json", action="store_true", help="print one JSON report to stdout")
    ap.add_argument("--strict", action="store_true", help="warnings fail")
    ap.add_argument("--device", default=None, help="auto|cpu|cuda|cuda:N|mps")
    args = ap.parse_args(argv)

    base = models_dir(args.models_dir)
    if base is None:
        print("selftest: error: no models dir (pass --models-dir or set MLFREEZE_MODELS_DIR)", file=sys.stderr)
        return 2
    try:
        doc, refs = read_models_index(base)
    except IndexError_ as exc:
        print(f"selftest: error: {exc}", file=sys.stderr)
        return 2

    from mlfreeze_runtime.verify import gate, report
    from mlfreeze_runtime.verify.result import summarize

    if not refs:
        print(f"selftest: error: {base / 'models.json'} lists no models: nothing would be checked", file=sys.stderr)
        return 2
    try:
        device = gate.runtime_device(args.device)
        providers = gate.runtime_providers(device)
    except ValueError as exc:  # DEVICE / ONNX_PROVIDERS name something this machine does not have
        print(f"selftest: error: {exc}", file=sys.stderr)
        return 2
    probes = base / PROBES_DIRNAME
    run = gate.run(refs, device=device, providers=providers, expected_providers=doc.get("expected_providers", []),
                   probes_dir=probes if probes.is_dir() else None)
    s = summarize(run.results, strict=args.strict)
    if args.json:
        ctx = {"models_dir": str(base), "set": doc.get("set"), "device": device, "providers": providers}
        print(json.dumps(report.document(run.results, strict=args.strict, context=ctx), indent=2))
    else:
        print(report.table(run.results))
        print(f"selftest: {s.checks} checks, {s.failed} failed, {s.warnings} warnings, {s.skipped} skipped")
    for line in report.failure_lines(run.results, strict=args.strict):
        print(f"FAILED {line}", file=sys.stderr)
    return 0 if s.passed else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
