"""A self-contained HTML report: inline CSS and SVG, no script, no CDN; opens offline.

One stacked bar per bundle (components, scaled to the largest bundle so bundles compare at
a glance), the side-by-side component table, the waste list, checks and baseline deltas.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Mapping
from html import escape
from typing import Any

from mlfreeze.sizes.render import _header, component_rows, headline
from mlfreeze.units import format_size

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1400px;box-sizing:border-box}
h1{font-size:1.4em;overflow-wrap:anywhere} h2{font-size:1.15em;margin-top:2em;overflow-wrap:anywhere}
h3{overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.5em 0;max-width:100%} td,th{padding:2px 10px;border-bottom:1px solid #ddd;
vertical-align:top;overflow-wrap:break-word} th{overflow-wrap:anywhere}
table.wide{table-layout:fixed;width:100%} table.wide td{overflow-wrap:anywhere} table.wide code{word-break:break-all}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums} td.n{white-space:nowrap} .bad{color:#b00;font-weight:bold}
.warn{color:#a60;font-weight:bold} .good{color:#270}
ul.headline{list-style:none;padding:0;font-size:1.05em} ul.headline li{margin:.2em 0;overflow-wrap:anywhere}
svg.bars{max-width:100%;height:auto}
.legend span{display:inline-block;margin-right:1em} .sw{display:inline-block;width:.9em;height:.9em;
margin-right:.3em;vertical-align:middle} code{font-size:.9em}
"""
_LIGHTNESS = (0.40, 0.60, 0.30, 0.50)
_SATURATION = 0.75
_LEVEL_CLASS = {"error": "bad", "warning": "warn", "ok": "good"}


def palette(n: int) -> list[str]:
    """``n`` distinct ``#rrggbb`` colours: ``n`` evenly spaced hues, neighbouring hues at different
    lightness (four levels), handed out with a stride through the wheel so that consecutive
    components (neighbours in a bar) get far-apart hues. For n <= 40 no two colours are closer
    than 40 in RGB (tests/unit/test_sizes_html.py)."""
    if n <= 0:
        return []
    stride = max(1, round(n * 0.38))
    while math.gcd(stride, n) != 1:
        stride += 1
    out: list[str] = []
    for i in range(n):
        slot = i * stride % n
        r, g, b = colorsys.hls_to_rgb(slot / n, _LIGHTNESS[slot % len(_LIGHTNESS)], _SATURATION)
        out.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return out


def _colors(bundles: list[Mapping[str, Any]]) -> dict[str, str]:
    """One distinct colour per component, the same in every bar of the report (largest first)."""
    names: list[str] = []
    for b in bundles:
        names += [c["name"] for c in b["components"] if c["name"] not in names]
    return dict(zip(names, palette(len(names)), strict=True))


def _bars(bundles: list[Mapping[str, Any]]) -> str:
    width, bar_h, label_w = 1000, 28, 0
    color = _colors(bundles).__getitem__
    largest = max((b["disk_bytes"] for b in bundles), default=1) or 1
    height = len(bundles) * (bar_h + 26) + 30
    parts = [f'<svg class="bars" width="{label_w + width + 10}" height="{height}" '
             f'viewBox="0 0 {label_w + width + 10} {height}" role="img" aria-label="components per bundle">']
    for i, b in enumerate(bundles):
        y = 26 + i * (bar_h + 26)
        parts.append(f'<text x="0" y="{y - 6}" font-size="13">{escape(b["name"])} '
                     f'({format_size(b["disk_bytes"])})</text>')
        x = float(label_w)
        for c in b["components"]:
            w = width * c["disk_bytes"] / largest
            if w <= 0:
                continue
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color(c["name"])}" '
                         f'stroke="#fff" stroke-width="0.5"><title>{escape(c["name"])}: {format_size(c["disk_bytes"])}'
                         f'</title></rect>')
            if w > 70:
                parts.append(f'<text x="{x + 4:.1f}" y="{y + bar_h * 0.65}" font-size="11" fill="#fff">'
                             f'{escape(c["name"])}</text>')
            x += w
    parts.append("</svg>")
    return "".join(parts)


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None,
           widths: list[str] | None = None) -> str:
    """A table; with ``widths`` (CSS widths per column) a fixed layout as wide as the page, whose
    long cells (paths) wrap instead of widening the page."""
    classes = classes or ([""] + ["n"] * (len(header) - 1))
    head = "".join(f'<th class="{c}">{escape(h)}</th>' for h, c in zip(header, classes, strict=True))
    body = "".join("<tr>" + "".join(f'<td class="{c}">{v}</td>' for v, c in zip(r, classes, strict=True)) + "</tr>"
                   for r in rows)
    if not widths:
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    cols = "".join(f'<col style="width:{w}">' for w in widths)
    return (f'<table class="wide"><colgroup>{cols}</colgroup>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


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
    out.append('<ul class="headline" id="headline">' + "".join(
        f'<li class="{_LEVEL_CLASS[level]}"{" id=breach" if level == "error" else ""}>{escape(line)}</li>'
        for level, line in headline(doc)) + "</ul>")
    out += ["<h2>Components</h2>", _bars(bundles), _legend(bundles)]
    rows = [[escape(v) for v in r] for r in component_rows(bundles)]
    out.append(_table([h for h in _header(bundles, "component")], rows))
    out += ["<h2>By kind</h2>", _table(_header(bundles, "kind"), [[escape(v) for v in r]
                                                                   for r in component_rows(bundles, "kinds")])]
    for b in bundles:
        w = b["waste"]
        out.append(f'<h2 id="waste-{escape(b["name"])}">Waste in {escape(b["name"])}: '
                   f'{format_size(w["total_bytes"])} could be saved</h2>')
        rows = [[escape(f["rule"]), format_size(f["bytes"]), str(f["files"]),
                 "<br>".join(f"<code>{escape(p)}</code>" for p in f["paths"][:5]), escape(f["why"])]
                for f in w["findings"]]
        out.append(_table(["rule", "bytes", "files", "paths", "why"], rows, ["", "n", "n", "", ""],
                          ["14em", "7em", "4em", "50%", "auto"]) if rows else "<p>none found</p>")
        checks = [[escape(c["what"]), format_size(c["actual_bytes"]), format_size(c["limit_bytes"]),
                   "ok" if c["ok"] else ('<span class="bad">' + ("over limit" if c["what"] == "asset-limit"
                                                                else "exceeded") + "</span>")]
                  for c in b["checks"]]
        out += [f"<h3>Checks for {escape(b['name'])}</h3>", _table(["check", "actual", "limit", "result"], checks)]
        d = b.get("baseline")
        if d:
            out.append(f"<h3>Against baseline {escape(str(d['baseline_name']))}: {format_size(d['delta_bytes'])} "
                       f"({d['delta_percent']}%)</h3>")
            keys = ("baseline_bytes", "current_bytes", "delta_bytes")
            rows = [[escape(r["name"]), *(format_size(r[k]) for k in keys)]
                    for r in d["components"] if r["delta_bytes"]]
            out.append(_table(["component", "baseline", "now", "delta"], rows))
    if any(not b["compressed"]["exact"] for b in bundles):
        out.append("<p>Compressed sizes marked ~ are estimates (sampled deflate); on-disk sizes are exact.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
