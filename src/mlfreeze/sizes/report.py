"""The ``sizes`` stage: where every megabyte of a bundle went, budgets, regressions and waste.

``mlfreeze sizes BUNDLE... [--venv DIR] [--baseline F.json] [--json F] [--markdown F] [--html F]``
prints a terminal table and writes the requested reports. ``mlfreeze build`` calls
:func:`report_bundles`, which writes ``sizes-<platform>.{json,md,html}`` into ``dist/reports/``.

The JSON document (``docs/sizes.schema.json``, ``schema_version`` 1) is the contract: the
Markdown, HTML and terminal renderings and the baseline diff are all made from it. Exact:
file counts, on-disk bytes, component and kind totals, duplicate groups, ELF symbol bytes.
Estimated unless ``exact_compressed``: compressed bytes (see src/mlfreeze/sizes/compress.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlfreeze import __version__
from mlfreeze.errors import BudgetExceeded, UsageError
from mlfreeze.project.budgets import load_budgets
from mlfreeze.sizes.budget import (
    Budgets,
    Check,
    asset_limit_check,
    budget_error_lines,
    check_budgets,
    delta,
    load_baseline,
    match_baseline,
)
from mlfreeze.sizes.compress import compressed_sizes
from mlfreeze.sizes.scan import KINDS, Inventory, scan
from mlfreeze.sizes.waste import find_waste
from mlfreeze_runtime.buildinfo import FLAVORS

SCHEMA_VERSION = 1
EXACT_ENV = "MLFREEZE_SIZES_EXACT"  # "1": deflate every byte at the release's level (slow; exact)


@dataclass(frozen=True, kw_only=True)
class SizesReport:
    doc: dict[str, Any]  # the JSON document
    breaches: tuple[str, ...]  # one line per exceeded budget (empty: within budget)
    warnings: tuple[str, ...]  # e.g. over GitHub's 2 GiB asset limit (estimated, so not fatal here)
    written: tuple[Path, ...] = ()


def _flavor(inv: Inventory) -> str | None:
    flavor = inv.info.get("flavor")
    if isinstance(flavor, str):
        return flavor
    for f in FLAVORS:
        if inv.name.endswith(f"-{f}"):
            return f
    return None


def _archive_format(inv: Inventory, default: str) -> str:
    fmt = inv.info.get("archive_format")
    return fmt if fmt in ("tar.gz", "zip") else default


def _totals(inv: Inventory, compressed: Sequence[int], key: str) -> list[dict[str, Any]]:
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for f, c in zip(inv.files, compressed, strict=True):
        row = acc[getattr(f, key)]
        row[0] += 1
        row[1] += f.size
        row[2] += c
    rows = [{"name": n, "files": a[0], "disk_bytes": a[1], "compressed_bytes": a[2]} for n, a in acc.items()]
    if key == "kind":
        rows += [{"name": k, "files": 0, "disk_bytes": 0, "compressed_bytes": 0} for k in KINDS if k not in acc]
        return sorted(rows, key=lambda r: KINDS.index(r["name"]))
    return sorted(rows, key=lambda r: (-r["disk_bytes"], r["name"]))


def bundle_report(root: Path, *, venv: bool = False, app: str | None = None, exact: bool = False,
                  archive_format: str = "tar.gz", duplicates: bool = True) -> dict[str, Any]:
    """The JSON object of one bundle (or venv): components, kinds, compressed size, waste."""
    t0 = time.perf_counter()
    inv = scan(root, venv=venv, app=app)
    t1 = time.perf_counter()
    fmt = _archive_format(inv, archive_format)
    comp = compressed_sizes(inv.root, [f.path for f in inv.files], [f.size for f in inv.files],
                            archive_format=fmt, exact=exact, groups=[f.component for f in inv.files])
    t2 = time.perf_counter()
    waste = find_waste(inv, check_duplicates=duplicates)
    t3 = time.perf_counter()
    info = inv.info
    return {
        "name": inv.name,
        "path": str(inv.root),
        "source": inv.source,
        "app": info.get("app") or app,
        "version": info.get("version"),
        "platform": info.get("platform"),
        "flavor": _flavor(inv),
        "accelerator": info.get("accelerator"),
        "archive_format": fmt,
        "files": len(inv.files),
        "links": inv.links,
        "disk_bytes": sum(f.size for f in inv.files),
        "compressed_bytes": sum(comp.sizes),
        "compressed": {"exact": comp.exact, "level": comp.level, "read_bytes": comp.read_bytes},
        "components": _totals(inv, comp.sizes, "component"),
        "kinds": _totals(inv, comp.sizes, "kind"),
        "models": list(inv.model_ids),
        "waste": {
            "total_bytes": waste.total,
            "hashed_bytes": waste.hashed_bytes,
            "findings": [{"rule": w.rule, "why": w.why, "bytes": w.bytes, "files": w.files, "paths": list(w.paths)}
                         for w in waste.findings],
        },
        "checks": [],
        "baseline": None,
        "timings": {"scan_s": round(t1 - t0, 3), "compress_s": round(t2 - t1, 3), "waste_s": round(t3 - t2, 3)},
    }


def _check_doc(c: Check) -> dict[str, Any]:
    return {"what": c.what, "limit_bytes": c.limit, "actual_bytes": c.actual, "ok": c.ok,
            **({} if c.ok else {"line": c.line})}


def build_report(bundles: Sequence[Path], *, venv: Path | None = None, baseline: Path | None = None,
                 budgets: Budgets | None = None, app: str | None = None, exact_compressed: bool = False,
                 archive_format: str = "tar.gz") -> SizesReport:
    """Measure ``bundles`` (and ``venv``), check budgets and the baseline; write nothing."""
    budgets = budgets or Budgets()
    base_doc = load_baseline(baseline) if baseline is not None else None
    docs = [bundle_report(Path(b), app=app, exact=exact_compressed, archive_format=archive_format)
            for b in bundles]
    if venv is not None:
        docs.append(bundle_report(Path(venv), venv=True, app=app, exact=exact_compressed,
                                  archive_format=archive_format))
    breaches: list[str] = []
    warnings: list[str] = []
    for doc in docs:
        checks = check_budgets(doc, budgets) if doc["source"] == "bundle" else []
        if base_doc is not None and baseline is not None:
            old = match_baseline(doc, base_doc, only=len(docs) == 1)
            if old is not None:
                doc["baseline"], growth = delta(doc, old, budgets, baseline)
                if growth is not None:
                    checks.append(growth)
        if doc["source"] == "bundle":  # a venv is never uploaded as a release asset
            limit = asset_limit_check(doc)
            checks.append(limit)
            if not limit.ok:
                warnings.append(limit.line)
        doc["checks"] = [_check_doc(c) for c in checks]
        breaches += budget_error_lines(checks)
    report = {
        "schema_version": SCHEMA_VERSION,
        "generator": f"mlfreeze {__version__}",
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "budgets": {"file": str(budgets.path) if budgets.path else None, "measure": budgets.measure},
        "baseline": str(baseline) if baseline is not None else None,
        "bundles": docs,
        "breaches": breaches,
    }
    return SizesReport(doc=report, breaches=tuple(breaches), warnings=tuple(warnings))


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def write_outputs(report: SizesReport, *, json_path: Path | None = None, markdown: Path | None = None,
                  html: Path | None = None) -> tuple[Path, ...]:
    from mlfreeze.sizes.render import to_json, to_markdown

    written = []
    if json_path is not None:
        written.append(_write(Path(json_path), to_json(report.doc)))
    if markdown is not None:
        written.append(_write(Path(markdown), to_markdown(report.doc)))
    if html is not None:
        from mlfreeze.sizes.html import to_html
        written.append(_write(Path(html), to_html(report.doc)))
    return tuple(written)


def raise_breaches(report: SizesReport, command: str = "sizes") -> None:
    """Exit 5 (:class:`BudgetExceeded`) when ``report`` breaches a budget: one line, or each on stderr."""
    if not report.breaches:
        return
    if len(report.breaches) == 1:
        raise BudgetExceeded(report.breaches[0])
    for line in report.breaches:
        print(f"mlfreeze {command}: budget exceeded: {line}", file=sys.stderr)
    raise BudgetExceeded(f"{len(report.breaches)} size budgets exceeded (each listed above)")


def default_pyproject() -> Path | None:
    """The project's pyproject.toml (mlfreeze.project.config.find_root), validated; None outside any project."""
    from mlfreeze.project.config import find_root_or_none, load_config

    root = find_root_or_none()
    return load_config(root).pyproject if root is not None else None


def report_bundles(bundles: Sequence[Path], reports_dir: Path, *, platform: str | None = None,
                   baseline: Path | None = None, pyproject: Path | None = None,
                   exact_compressed: bool = False, check: bool = True,
                   budgets: Budgets | None = None) -> SizesReport:
    """For ``mlfreeze build``: write ``sizes-<platform>.{json,md,html}`` into ``reports_dir``.

    ``platform`` defaults to the first bundle's BUILD-INFO platform. Budgets come from
    ``pyproject`` (default: ./pyproject.toml). The reports are written first; then, when
    ``check`` and a budget is exceeded, :class:`BudgetExceeded` (exit 5) is raised.
    """
    if not bundles:
        raise UsageError("no bundles to report; freeze one first")
    if budgets is None:  # ``budgets``: the project's, already loaded (mlfreeze.project.config.ProjectConfig.budgets)
        pyproject = pyproject or default_pyproject()
        budgets = load_budgets(pyproject) if pyproject is not None else Budgets()
    report = build_report(bundles, baseline=baseline, budgets=budgets, exact_compressed=exact_compressed)
    name = platform or next((b["platform"] for b in report.doc["bundles"] if b.get("platform")), None) or "local"
    reports_dir = Path(reports_dir)
    written = write_outputs(report, json_path=reports_dir / f"sizes-{name}.json",
                            markdown=reports_dir / f"sizes-{name}.md", html=reports_dir / f"sizes-{name}.html")
    report = SizesReport(doc=report.doc, breaches=report.breaches, warnings=report.warnings, written=written)
    if check:
        raise_breaches(report, "build")
    return report


def main(args: argparse.Namespace) -> int:
    """``mlfreeze sizes``: print the table, write the requested reports, exit 5 over budget."""
    from mlfreeze.sizes.render import to_terminal

    bundles = [Path(b) for b in args.bundles]
    venv = Path(args.venv) if args.venv else None
    if not bundles and venv is None:
        raise UsageError("nothing to measure; pass BUNDLE_DIR... (dist/<name>/) and/or --venv DIR")
    for b in bundles:
        if not b.is_dir():
            raise UsageError(f"{b}: not a directory; pass a bundle folder such as "
                             "dist/<app>-<ver>-<platform>-<flavor>/")
    if venv is not None and not venv.is_dir():
        raise UsageError(f"{venv}: --venv is not a directory")
    pyproject = default_pyproject()
    budgets = load_budgets(pyproject) if pyproject is not None else Budgets()
    exact = os.environ.get(EXACT_ENV) == "1"
    report = build_report(bundles, venv=venv, baseline=Path(args.baseline) if args.baseline else None,
                          budgets=budgets, exact_compressed=exact)
    print(to_terminal(report.doc))
    written = write_outputs(report, json_path=Path(args.json_out) if args.json_out else None,
                            markdown=Path(args.markdown) if args.markdown else None,
                            html=Path(args.html) if args.html else None)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    for line in report.warnings:
        print(f"mlfreeze sizes: warning: {line}", file=sys.stderr)
    raise_breaches(report)
    return 0
