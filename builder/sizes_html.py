"""A self-contained HTML report: inline CSS and SVG, no script, no CDN; opens offline.

One stacked bar per bundle (components, scaled to the largest bundle so bundles compare at
a glance), the side-by-side component table, the waste list, checks and baseline deltas.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from mlfreeze.sizes_budget import human
from mlfreeze.sizes_render import _header, component_rows

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf")
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0} td,th{padding:2px 10px;border-bottom:1px solid #ddd}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums} .bad{color:#b00;font-weight:bold}
.legend span{display:inline-block;margin-right:1em} .sw{display:inline-block;width:.9em;height:.9em;
margin-right:.3em;vertical-align:middle} code{font-size:.9em}
"""


def _colors(bundles: list[Mapping[str, Any]]) -> dict[str, str]:
    """One colour per component, the same in every bar of the report (largest components first)."""
    names: list[str] = []
    for b in bundles:
        names += [c["name"] for c in b["components"] if c["name"] not in names]
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def _bars(bundles: list[Mapping[str, Any]]) -> str:
    width, bar_h, label_w = 1000, 28, 0
    color = _colors(bundles).__getitem__
    largest = max((b["disk_bytes"] for b in bundles), default=1) or 1
    height = len(bundles) * (bar_h + 26) + 30
    parts = [f'<svg width="{label_w + width + 10}" height="{height}" '
             f'role="img" aria-label="components per bundle">']
    for i, b in enumerate(bundles):
        y = 26 + i * (bar_h + 26)
        parts.append(f'<text x="0" y="{y - 6}" font-size="13">{escape(b["name"])} '
                     f'({human(b["disk_bytes"])})</text>')
        x = float(label_w)
        for c in b["components"]:
            w = width * c["disk_bytes"] / largest
            if w <= 0:
                continue
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color(c["name"])}" '
                         f'stroke="#fff" stroke-width="0.5"><title>{escape(c["name"])}: {human(c["disk_bytes"])}'
                         f'</title></rect>')
            if w > 70:
                parts.append(f'<text x="{x + 4:.1f}" y="{y + bar_h * 0.65}" font-size="11" fill="#fff">'
                             f'{escape(c["name"])}</text>')
            x += w
    parts.append("</svg>")
    return "".join(parts)


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    classes = classes or ([""] + ["n"] * (len(header) - 1))
    head = "".join(f'<th class="{c}">{escape(h)}</th>' for h, c in zip(header, classes, strict=True))
    body = "".join("<tr>" + "".join(f'<td class="{c}">{v}</td>' for v, c in zip(r, classes, strict=True)) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _legend(bundles: list[Mapping[str, Any]]) -> str:
    return '<p class="legend">' + "".join(
        f'<span><i class="sw" style="background:{c}"></i>{escape(n)}</span>' for n, c in _colors(bundles).items()) \
        + "</p>"


def to_html(doc: Mapping[str, Any]) -> str:
    bundles = list(doc["bundles"])
    title = "Bundle sizes: " + ", ".join(b["name"] for b in bundles)
    out = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
           f"<style>{CSS}</style></head><body>", f"<h1>{escape(title)}</h1>",
           f'<p>{escape(doc.get("generator", ""))}, {escape(doc.get("generated_at", ""))}</p>']
    for line in doc.get("breaches", []):
        out.append(f'<p class="bad" id="breach">Budget exceeded: {escape(line)}</p>')
    out += ["<h2>Components</h2>", _bars(bundles), _legend(bundles)]
    rows = [[escape(v) for v in r] for r in component_rows(bundles)]
    out.append(_table([h for h in _header(bundles, "component")], rows))
    out += ["<h2>By kind</h2>", _table(_header(bundles, "kind"), [[escape(v) for v in r]
                                                                   for r in component_rows(bundles, "kinds")])]
    for b in bundles:
        w = b["waste"]
        out.append(f'<h2 id="waste-{escape(b["name"])}">Waste in {escape(b["name"])}: '
                   f'{human(w["total_bytes"])} could be saved</h2>')
        rows = [[escape(f["rule"]), human(f["bytes"]), str(f["files"]),
                 "<br>".join(f"<code>{escape(p)}</code>" for p in f["paths"][:5]), escape(f["why"])]
                for f in w["findings"]]
        out.append(_table(["rule", "bytes", "files", "paths", "why"], rows, ["", "n", "n", "", ""])
                   if rows else "<p>none found</p>")
        checks = [[escape(c["what"]), human(c["actual_bytes"]), human(c["limit_bytes"]),
                   "ok" if c["ok"] else ('<span class="bad">' + ("over limit" if c["what"] == "asset-limit"
                                                                else "exceeded") + "</span>")]
                  for c in b["checks"]]
        out += [f"<h3>Checks for {escape(b['name'])}</h3>", _table(["check", "actual", "limit", "result"], checks)]
        d = b.get("baseline")
        if d:
            out.append(f"<h3>Against baseline {escape(str(d['baseline_name']))}: {human(d['delta_bytes'])} "
                       f"({d['delta_percent']}%)</h3>")
            rows = [[escape(r["name"]), human(r["baseline_bytes"]), human(r["current_bytes"]), human(r["delta_bytes"])]
                    for r in d["components"] if r["delta_bytes"]]
            out.append(_table(["component", "baseline", "now", "delta"], rows))
    if any(not b["compressed"]["exact"] for b in bundles):
        out.append("<p>Compressed sizes marked ~ are estimates (sampled deflate); on-disk sizes are exact.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
