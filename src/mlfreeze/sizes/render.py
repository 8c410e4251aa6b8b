"""Text renderings of a sizes report: JSON, a terminal table, Markdown for $GITHUB_STEP_SUMMARY.

Every rendering is made from the JSON document only, so what the table shows is what the
JSON says. Compressed figures carry a ``~`` when they are estimates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from mlfreeze.units import GITHUB_ASSET_LIMIT, format_size

MAX_WASTE_LINES = 12


def to_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def headline(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What a reader must see first, as ``(level, line)`` with level ``"error" | "warning" | "ok"``:
    every release-asset finding (a bundle whose compressed archive is over GitHub's per-asset
    limit will be split by ``mlfreeze release``), then the budget verdict (each exceeded budget,
    or that all budgets hold, or that none is set). Made from the JSON document only."""
    out: list[tuple[str, str]] = []
    for b in doc["bundles"]:
        for c in b["checks"]:
            if c["what"] == "asset-limit" and not c["ok"]:
                out.append(("warning", f"release asset: {c.get('line') or b['name'] + ' is over the limit'}"))
    if not out:
        out.append(("ok", f"release assets: every compressed archive is under GitHub's "
                          f"{format_size(GITHUB_ASSET_LIMIT)} per-asset limit"))
    held = [(b, c) for b in doc["bundles"] for c in b["checks"] if c["what"] != "asset-limit"]
    if doc.get("breaches"):
        out += [("error", f"budget exceeded: {line}") for line in doc["breaches"]]
    elif held:
        measure = (doc.get("budgets") or {}).get("measure", "disk")
        parts = [f"{b['name']} {c['what']} {format_size(c['actual_bytes'])} of {format_size(c['limit_bytes'])}"
                 for b, c in held]
        out.append(("ok", f"budgets: all {len(held)} held ({measure}): {'; '.join(parts)}"))
    else:
        out.append(("ok", "budgets: none set ([tool.mlfreeze.budgets] in pyproject.toml)"))
    return out


def _mark(bundle: Mapping[str, Any]) -> str:
    return "" if bundle["compressed"]["exact"] else "~"


def component_rows(bundles: Sequence[Mapping[str, Any]], key: str = "components") -> list[list[str]]:
    """Side-by-side rows: name, then (disk, compressed) per bundle; '-' where absent; TOTAL last."""
    order: list[str] = []
    for b in bundles:
        order += [c["name"] for c in b[key] if c["name"] not in order]
    if key == "components":
        largest = {n: max((c["disk_bytes"] for b in bundles for c in b[key] if c["name"] == n), default=0)
                   for n in order}
        order.sort(key=lambda n: -largest[n])
    rows = []
    for name in order:
        row = [name]
        for b in bundles:
            c = next((c for c in b[key] if c["name"] == name), None)
            row += [format_size(c["disk_bytes"]), _mark(b) + format_size(c["compressed_bytes"])] if c else ["-", "-"]
        rows.append(row)
    total = ["TOTAL"]
    for b in bundles:
        total += [format_size(b["disk_bytes"]), _mark(b) + format_size(b["compressed_bytes"])]
    rows.append(total)
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = [f"{{:<{widths[0]}}}"] + [f"{{:>{w}}}" for w in widths[1:]]
    return ["  ".join(f.format(v) for f, v in zip(fmt, r, strict=True)).rstrip() for r in [header, *rows]]


def _header(bundles: Sequence[Mapping[str, Any]], first: str) -> list[str]:
    out = [first]
    for b in bundles:
        out += [f"{b['name']} disk", f"{b['archive_format']}"]
    return out


def _waste_lines(b: Mapping[str, Any]) -> list[str]:
    w = b["waste"]
    lines = [f"waste in {b['name']}: {format_size(w['total_bytes'])} could be saved"]
    for f in w["findings"][:MAX_WASTE_LINES]:
        example = f["paths"][0] if f["paths"] else ""
        more = f" (+{f['files'] - 1} more)" if f["files"] > 1 else ""
        lines.append(f"  {f['rule']:<22} {format_size(f['bytes']):>10}  {example}{more}  # {f['why']}")
    if len(w["findings"]) > MAX_WASTE_LINES:
        lines.append(f"  ... {len(w['findings']) - MAX_WASTE_LINES} more findings in the JSON report")
    return lines


def _check_lines(b: Mapping[str, Any]) -> list[str]:
    lines = []
    for c in b["checks"]:
        state = "ok" if c["ok"] else ("WARNING" if c["what"] == "asset-limit" else "EXCEEDED")
        actual, limit = format_size(c["actual_bytes"]), format_size(c["limit_bytes"])
        lines.append(f"  {c['what']:<28} {actual:>10} / {limit:>10}  {state}")
    return lines


def _delta_lines(b: Mapping[str, Any], limit: int = 10) -> list[str]:
    d = b.get("baseline")
    if not d:
        return []
    lines = [f"vs baseline {d['baseline_name']} ({d['baseline']}): {format_size(d['delta_bytes'])}"
             f" ({d['delta_percent']}%)"]
    for r in [r for r in d["components"] if r["delta_bytes"]][:limit]:
        before, now = format_size(r["baseline_bytes"]), format_size(r["current_bytes"])
        lines.append(f"  {r['name']:<28} {before:>10} -> {now:>10}"
                     f"  {'+' if r['delta_bytes'] > 0 else ''}{format_size(r['delta_bytes'])}")
    return lines


def to_terminal(doc: Mapping[str, Any]) -> str:
    bundles = doc["bundles"]
    out = [("!! " if level != "ok" else "") + line for level, line in headline(doc)] + [""]
    out += _table(_header(bundles, "component"), component_rows(bundles))
    out += [""] + _table(_header(bundles, "kind"), component_rows(bundles, "kinds"))
    for b in bundles:
        out += [""] + _waste_lines(b)
        out += [f"checks for {b['name']}:"] + _check_lines(b)
        out += _delta_lines(b)
    if any(not b["compressed"]["exact"] for b in bundles):
        out += ["", "~ compressed sizes are estimates (sampled deflate); exact: MLFREEZE_SIZES_EXACT=1"]
    return "\n".join(out)


def _md_table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """``align``: one letter per column, l or r (default: the first left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def to_markdown(doc: Mapping[str, Any]) -> str:
    bundles = doc["bundles"]
    names = ", ".join(f"`{b['name']}`" for b in bundles)
    out = [f"## Bundle sizes: {names}", ""]
    icon = {"error": ":x: **", "warning": ":warning: **", "ok": ":white_check_mark: "}
    out += [f"> {icon[level]}{line}{'**' if level != 'ok' else ''}  " for level, line in headline(doc)] + [""]
    out += _md_table(_header(bundles, "component"), component_rows(bundles)) + [""]
    out += _md_table(_header(bundles, "kind"), component_rows(bundles, "kinds")) + [""]
    for b in bundles:
        w = b["waste"]
        out += [f"### Waste in `{b['name']}`: {format_size(w['total_bytes'])}", ""]
        rows = [[f["rule"], format_size(f["bytes"]), str(f["files"]), f"`{f['paths'][0]}`" if f["paths"] else "",
                 f["why"]] for f in w["findings"][:MAX_WASTE_LINES]]
        out += _md_table(["rule", "bytes", "files", "example", "why"], rows, "lrrll") + [""] if rows \
            else ["none found", ""]
        checks = [[c["what"], format_size(c["actual_bytes"]), format_size(c["limit_bytes"]),
                   "ok" if c["ok"] else ("warning" if c["what"] == "asset-limit" else "**exceeded**")]
                  for c in b["checks"]]
        out += _md_table(["check", "actual", "limit", "result"], checks, "lrrl") + [""]
        d = b.get("baseline")
        if d:
            out += [f"Baseline `{d['baseline_name']}`: {format_size(d['delta_bytes'])} ({d['delta_percent']}%)", ""]
            rows = [[r["name"], *(format_size(r[k]) for k in ("baseline_bytes", "current_bytes", "delta_bytes"))]
                    for r in d["components"] if r["delta_bytes"]][:15]
            if rows:
                out += _md_table(["component", "baseline", "now", "delta"], rows) + [""]
    if any(not b["compressed"]["exact"] for b in bundles):
        out += ["Compressed sizes marked `~` are estimates (sampled deflate); on-disk sizes are exact."]
    return "\n".join(out) + "\n"
