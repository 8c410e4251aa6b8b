"""Reports: a readable table, a JSON document and JUnit XML, from the same results."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mlfreeze_runtime.verify.result import FAIL, SKIP, WARN, CheckResult, summarize

SCHEMA_VERSION = 1


def table(results: Sequence[CheckResult], *, width: int = 110) -> str:
    """One row per check: model, check, status, and what was expected / what came out."""
    rows = [("MODEL", "CHECK", "STATUS", "DETAIL")]
    for r in results:
        detail = f"expected {r.expected}; got {r.got}" if r.status in (FAIL, WARN) else r.got
        rows.append((r.model, r.check, r.status.upper(), detail))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = []
    for m, c, s, d in rows:
        line = f"{m:<{w0}}  {c:<{w1}}  {s:<6}  {d}"
        lines.append(line if len(line) <= width or s in ("FAIL", "WARN") else line[: width - 3] + "...")
    return "\n".join(lines)


def document(results: Sequence[CheckResult], *, strict: bool, context: Mapping[str, Any]) -> dict[str, Any]:
    s = summarize(list(results), strict=strict)
    return {
        "schema_version": SCHEMA_VERSION,
        "passed": s.passed,
        "strict": strict,
        "summary": {"checks": s.checks, "failed": s.failed, "warnings": s.warnings, "skipped": s.skipped},
        "context": dict(context),
        "results": [asdict(r) for r in results],
    }


def _atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_json(path: Path, results: Sequence[CheckResult], *, strict: bool, context: Mapping[str, Any]) -> None:
    _atomic_write(path, json.dumps(document(results, strict=strict, context=context), indent=2) + "\n")


def junit(results: Sequence[CheckResult], *, strict: bool, name: str = "mlfreeze-verify") -> str:
    """JUnit XML: one testsuite per model, one testcase per check (warnings fail under --strict)."""
    suites = ET.Element("testsuites", name=name)
    by_model: dict[str, list[CheckResult]] = {}
    for r in results:
        by_model.setdefault(r.model, []).append(r)
    for model, rs in by_model.items():
        failures = sum(r.status == FAIL or (strict and r.status == WARN) for r in rs)
        suite = ET.SubElement(suites, "testsuite", name=model, tests=str(len(rs)), failures=str(failures),
                              skipped=str(sum(r.status == SKIP for r in rs)),
                              time=f"{sum(r.seconds for r in rs):.3f}")
        for r in rs:
            case = ET.SubElement(suite, "testcase", classname=f"verify.{model}", name=r.check, time=f"{r.seconds:.3f}")
            message = f"expected {r.expected}; got {r.got}"
            if r.status == FAIL or (strict and r.status == WARN):
                ET.SubElement(case, "failure", message=message).text = message
            elif r.status == SKIP:
                ET.SubElement(case, "skipped", message=r.got)
            elif r.status == WARN:
                ET.SubElement(case, "system-out").text = f"WARNING: {message}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_junit(path: Path, results: Sequence[CheckResult], *, strict: bool) -> None:
    _atomic_write(path, junit(results, strict=strict))


def failure_lines(results: Sequence[CheckResult], *, strict: bool) -> list[str]:
    return [r.line() for r in results if r.status == FAIL or (strict and r.status == WARN)]
