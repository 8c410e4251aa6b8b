"""One size grammar, one formatter, one GitHub limit: budgets, release splits and every report agree."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from test_sizes_scan import make_bundle

from mlfreeze.errors import UsageError
from mlfreeze.project.budgets import load_budgets
from mlfreeze.release import assemble as release
from mlfreeze.sizes import budget as sizes_budget
from mlfreeze.sizes.budget import check_budgets
from mlfreeze.sizes.html import to_html
from mlfreeze.sizes.render import to_markdown, to_terminal
from mlfreeze.sizes.report import build_report
from mlfreeze.units import GITHUB_ASSET_LIMIT, format_exact, format_size, parse_size


@pytest.mark.parametrize(("text", "n"), [
    ("1073741824", 2**30), ("1 GiB", 2**30), ("1GiB", 2**30), ("1 gib", 2**30), (2**30, 2**30),
    ("1 GB", 10**9), ("1GB", 10**9), ("1 gb", 10**9),
    ("60MB", 60_000_000), ("60 MB", 60_000_000), ("60 MiB", 60 * 2**20), ("4.2 GB", 4_200_000_000),
    ("1.5 KiB", 1536), ("1 kB", 1000), ("1 KB", 1000), ("2 TiB", 2 * 2**40), ("3 TB", 3 * 10**12),
    ("0", 0), ("0 B", 0), ("512 B", 512), ("  7  ", 7),
])
def test_parse_size_reads_si_and_iec_as_written(text: str | int, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "abc", "-5", "1 G", "1g", "5M", "2 K", "1 XB", "1.5", "1.5 B", "1,000",
                                  True, -1, "GB", "1 GB 2"])
def test_parse_size_refuses_what_it_cannot_read(text: str | int) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_a_bare_letter_is_refused_as_ambiguous_naming_both_readings() -> None:
    with pytest.raises(ValueError, match=r"ambiguous.*MB.*MiB"):
        parse_size("60M")


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (60 * 2**20, "60.0 MiB"),
    (2**30 - 1, "1.0 GiB"), (2**31, "2.0 GiB"), (5_066_000_000, "4.7 GiB"), (3 * 2**40, "3.0 TiB"),
    (-1536, "-1.5 KiB"), (-5, "-5 B"),
])
def test_format_size_writes_binary_units(n: int, text: str) -> None:
    assert format_size(n) == text


def test_format_exact_gives_bytes_and_the_one_unit() -> None:
    assert format_exact(GITHUB_ASSET_LIMIT) == "2,147,483,648 bytes (2.0 GiB)"


def test_one_github_limit_everywhere() -> None:
    assert GITHUB_ASSET_LIMIT == 2 * 1024**3
    assert release.GITHUB_ASSET_LIMIT is GITHUB_ASSET_LIMIT
    assert sizes_budget.GITHUB_ASSET_LIMIT is GITHUB_ASSET_LIMIT
    assert release.DEFAULT_SPLIT_LIMIT < GITHUB_ASSET_LIMIT


def _budget(tmp_path: Path, text: str) -> int:
    p = tmp_path / "pyproject.toml"
    value = text if text.isdigit() else f'"{text}"'
    p.write_text(f"[tool.mlfreeze]\napp = 'x'\n[tool.mlfreeze.budgets]\nfull = {value}\n")
    return load_budgets(p).totals["full"]


def _split(text: str) -> int:
    return release.split_limit({"MLFREEZE_SPLIT_LIMIT": text})


@pytest.mark.parametrize(("texts", "n"), [
    (("1 GiB", "1073741824", "1GiB"), 2**30),
    (("1 GB", "1000000000", "1GB"), 10**9),
    (("60MB", "60 MB", "60000000"), 60_000_000),
    (("60 MiB", "62914560"), 60 * 2**20),
])
def test_budgets_and_release_splits_read_a_size_the_same_way(tmp_path: Path, texts: tuple[str, ...], n: int) -> None:
    for text in texts:
        assert _budget(tmp_path, text) == n, text
        assert _split(text) == n, text


def test_the_split_limit_must_stay_below_githubs_limit() -> None:
    assert _split("2047 MiB") == 2047 * 2**20
    assert _split("2.1 GB") == 2_100_000_000  # decimal: still under 2 GiB (2.147 GB)
    for text in ("2 GiB", "2147483648", "2.2 GB"):
        with pytest.raises(UsageError, match="2.0 GiB per-asset limit"):
            _split(text)


def test_a_bad_budget_size_names_the_key(tmp_path: Path) -> None:
    p = tmp_path / "pyproject.toml"
    p.write_text("[tool.mlfreeze]\napp = 'x'\n[tool.mlfreeze.budgets]\nlite = '60 M'\n")
    with pytest.raises(UsageError, match=r"budgets\.lite.*ambiguous"):
        load_budgets(p)


SI_UNIT = re.compile(r"(?<![\"'\d.])\d+(?:\.\d+)? ?(?:kB|KB|MB|GB|TB)\b")  # a budget as written is quoted


def test_every_report_states_sizes_in_one_unit(tmp_path: Path) -> None:
    full = make_bundle(tmp_path / "f")
    p = tmp_path / "pyproject.toml"
    p.write_text("[tool.mlfreeze]\napp = 'x'\n[tool.mlfreeze.budgets]\nfull = '1 MB'\nlite = '60 MB'\n")
    report = build_report([full], budgets=load_budgets(p))
    texts = {"terminal": to_terminal(report.doc), "markdown": to_markdown(report.doc),
             "html": html.unescape(to_html(report.doc)), "breach": report.breaches[0]}
    for name, text in texts.items():
        assert not SI_UNIT.search(text), (name, SI_UNIT.search(text))
        assert " MiB" in text, name
    total = report.doc["bundles"][0]["disk_bytes"]
    assert format_size(total) in texts["terminal"] and format_exact(total) in texts["breach"]
    # the budget is shown as written too, so the reader can find it in pyproject.toml
    assert "(written '1 MB')" in texts["breach"]


def test_a_component_budget_line_uses_the_same_unit(tmp_path: Path) -> None:
    full = make_bundle(tmp_path / "f")
    p = tmp_path / "pyproject.toml"
    p.write_text("[tool.mlfreeze]\napp = 'x'\n[tool.mlfreeze.budgets]\ncomponents = { torch = '1 KiB' }\n")
    doc = build_report([full], budgets=load_budgets(p)).doc["bundles"][0]
    [check] = [c for c in check_budgets(doc, load_budgets(p)) if c.what == "component:torch"]
    assert not check.ok and "budget of 1,024 bytes (1.0 KiB)" in check.line
