"""The HTML report and the summary headline: findings first, one colour per component, no overflow."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from test_sizes_scan import make_bundle

from mlfreeze.project.budgets import load_budgets
from mlfreeze.sizes.html import _colors, palette, to_html
from mlfreeze.sizes.render import headline, to_markdown, to_terminal
from mlfreeze.sizes.report import build_report
from mlfreeze.units import GITHUB_ASSET_LIMIT


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@pytest.mark.parametrize("n", [1, 16, 17, 26, 40])
def test_palette_gives_every_component_its_own_colour(n: int) -> None:
    colours = palette(n)
    assert len(colours) == n and len(set(colours)) == n
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours)
    # distinct to the eye too, not just as strings: no two closer than 40 in RGB
    closest = min(sum((a - b) ** 2 for a, b in zip(_rgb(x), _rgb(y), strict=True)) ** 0.5
                  for x, y in itertools.combinations(colours, 2)) if n > 1 else 999
    assert closest >= 40, closest


def test_consecutive_components_get_far_apart_hues() -> None:
    colours = palette(26)
    assert all(sum(abs(a - b) for a, b in zip(_rgb(x), _rgb(y), strict=True)) > 120
               for x, y in itertools.pairwise(colours))


def _doc_with(components: int) -> dict[str, Any]:
    comps = [{"name": f"comp{i:02d}", "files": 1, "disk_bytes": 1000 - i, "compressed_bytes": 500} for i in range(
        components)]
    return {"bundles": [{"name": "b", "components": comps}]}


def test_forty_components_get_forty_colours_in_the_legend() -> None:
    colours = _colors(_doc_with(40)["bundles"])
    assert len(colours) == 40 and len(set(colours.values())) == 40


def _bundle(tmp_path: Path, **budgets: str) -> dict[str, Any]:
    bundle = make_bundle(tmp_path / "f")
    p = tmp_path / "pyproject.toml"
    p.write_text("[tool.mlfreeze]\napp = 'x'\n[tool.mlfreeze.budgets]\n"
                 + "".join(f"{k} = '{v}'\n" for k, v in budgets.items()))
    return build_report([bundle], budgets=load_budgets(p)).doc


def _over_the_asset_limit(doc: dict[str, Any]) -> dict[str, Any]:
    """The same report as if the bundle compressed to 2.8 GiB (as the full linux-cuda bundle does)."""
    from mlfreeze.sizes.budget import asset_limit_check

    b = doc["bundles"][0]
    b["compressed_bytes"] = 3_000_000_000
    check = asset_limit_check(b)
    assert not check.ok
    b["checks"] = [c for c in b["checks"] if c["what"] != "asset-limit"] + [
        {"what": "asset-limit", "limit_bytes": GITHUB_ASSET_LIMIT, "actual_bytes": check.actual, "ok": False,
         "line": check.line}]
    return doc


def test_headline_puts_the_release_asset_finding_first_then_the_budget_verdict(tmp_path: Path) -> None:
    doc = _over_the_asset_limit(_bundle(tmp_path, full="1 MB"))
    lines = headline(doc)
    assert [level for level, _ in lines] == ["warning", "error"]
    assert "over GitHub's 2.0 GiB per-asset limit" in lines[0][1] and "split" in lines[0][1]
    assert lines[1][1].startswith("budget exceeded: ")


def test_headline_says_budgets_held_and_assets_fit(tmp_path: Path) -> None:
    lines = headline(_bundle(tmp_path, full="1 GiB"))
    assert [level for level, _ in lines] == ["ok", "ok"]
    assert "under GitHub's 2.0 GiB per-asset limit" in lines[0][1]
    assert lines[1][1].startswith("budgets: all 1 held (disk)") and "of 1.0 GiB" in lines[1][1]


def test_headline_says_when_no_budget_is_set(tmp_path: Path) -> None:
    doc = build_report([make_bundle(tmp_path)]).doc
    assert headline(doc)[-1] == ("ok", "budgets: none set ([tool.mlfreeze.budgets] in pyproject.toml)")


def test_every_rendering_starts_with_the_findings(tmp_path: Path) -> None:
    doc = _over_the_asset_limit(_bundle(tmp_path, full="1 MB"))
    page = to_html(doc)
    head = page.index('id="headline"')
    assert head < page.index("<h2>Components</h2>")
    assert head < page.index("per-asset limit") < page.index("budget exceeded") < page.index("<h2>")
    term = to_terminal(doc).splitlines()
    assert term[0].startswith("!! release asset: ") and term[1].startswith("!! budget exceeded: ")
    md = to_markdown(doc).splitlines()
    assert md[2].startswith("> :warning: **release asset: ") and md[3].startswith("> :x: **budget exceeded")


def test_long_paths_wrap_in_a_fixed_width_waste_table(tmp_path: Path) -> None:
    doc = build_report([make_bundle(tmp_path)]).doc
    page = to_html(doc)
    assert '<table class="wide"><colgroup>' in page  # the waste table has a fixed layout
    assert "table.wide{table-layout:fixed;width:100%}" in page and "word-break:break-all" in page
    assert 'svg class="bars"' in page and "viewBox=" in page  # the bars scale down with the window
