"""Budgets from [tool.mlfreeze.budgets] and the baseline diff."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlfreeze.errors import ConfigError, UsageError
from mlfreeze.project.budgets import load_budgets
from mlfreeze.sizes.budget import check_budgets, delta, load_baseline
from mlfreeze.units import parse_size


@pytest.mark.parametrize(("text", "n"), [("4.2 GB", 4_200_000_000), ("60 MB", 60_000_000), ("60MiB", 62914560),
                                         ("1 kB", 1000), (1500, 1500), ("0 B", 0), ("2 GiB", 2**31)])
def test_parse_size(text: str | int, n: int) -> None:
    assert parse_size(text) == n


def write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "pyproject.toml"
    p.write_text("[tool.mlfreeze]\napp = 'x'\n[tool.mlfreeze.budgets]\n" + body)
    return p


def test_budgets_load_from_the_project(tmp_path: Path) -> None:
    b = load_budgets(write(tmp_path, 'full = "4.2 GB"\nlite = { total = "60 MB", components = { python = "20 MB" } }\n'
                                     'components = { triton = 0 }\nmax_growth = "5%"\n'))
    assert b.totals == {"full": 4_200_000_000, "lite": 60_000_000}
    assert b.components == {"lite": {"python": 20_000_000}, "*": {"triton": 0}}
    assert b.max_growth is not None and b.max_growth.allowed(1000) == 50


def test_the_repository_budgets_load(root: Path) -> None:
    b = load_budgets(root / "pyproject.toml")
    assert set(b.totals) == {"full", "lite"}
    assert b.accelerators["slim"] == {"cpu": 450_000_000, "mps": 450_000_000, "cuda": 2_600_000_000}
    # lite keeps the app's numpy and Pillow (87.6 MB measured for photo-search, stripped); the budget is
    # that plus headroom, far below any bundle with the ML stack
    assert 87_600_000 < b.totals["lite"] <= 120_000_000
    assert b.totals["lite"] < b.totals["full"]


@pytest.mark.parametrize(("body", "key"), [('full = "4.2 GBs"\n', "tool.mlfreeze.budgets.full"),
                                           ('fulll = "1 GB"\n', "tool.mlfreeze.budgets.fulll"),
                                           ('max_growth = "lots"\n', "tool.mlfreeze.budgets.max_growth"),
                                           ('components = { torch = "big" }\n',
                                            "tool.mlfreeze.budgets.components.torch"),
                                           ('lite = { totl = "1 MB" }\n', "tool.mlfreeze.budgets.lite.totl")])
def test_bad_budgets_name_file_and_key(tmp_path: Path, body: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_budgets(write(tmp_path, body))
    assert str(tmp_path / "pyproject.toml") in err.value.message and f"'{key}'" in err.value.message


def bundle(total: int, torch: int) -> dict:
    return {"name": "b-full", "flavor": "full", "platform": "linux-cpu", "disk_bytes": total,
            "compressed_bytes": total // 2, "components": [
                {"name": "torch", "disk_bytes": torch, "compressed_bytes": torch // 2},
                {"name": "app", "disk_bytes": total - torch, "compressed_bytes": 0}]}


def test_budget_checks(tmp_path: Path) -> None:
    b = load_budgets(write(tmp_path, 'full = 1000\ncomponents = { torch = 600 }\n'))
    assert [c.ok for c in check_budgets(bundle(1000, 600), b)] == [True, True]
    checks = check_budgets(bundle(1001, 601), b)
    assert [c.ok for c in checks] == [False, False]
    assert "1,001 bytes" in checks[0].line and "full budget of 1,000" in checks[0].line


def test_baseline_delta_and_growth(tmp_path: Path) -> None:
    b = load_budgets(write(tmp_path, 'max_growth = "5%"\n'))
    doc, check = delta(bundle(1100, 700), bundle(1000, 600), b, tmp_path / "old.json")
    torch = next(r for r in doc["components"] if r["name"] == "torch")
    assert (torch["baseline_bytes"], torch["current_bytes"], torch["delta_bytes"]) == (600, 700, 100)
    assert doc["delta_bytes"] == 100 and doc["delta_percent"] == 10.0
    assert check is not None and not check.ok and check.limit == 50
    packed = load_budgets(write(tmp_path, 'measure = "compressed"\nmax_growth = "5%"\n'))
    _, check = delta(bundle(1100, 700), bundle(1000, 600), packed, tmp_path / "old.json")
    assert check is not None and (check.limit, check.actual) == (25, 50)  # compressed: 500 -> 550


def test_a_bad_baseline_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text('{"bundles": []}')
    with pytest.raises(UsageError, match="not a sizes report"):
        load_baseline(tmp_path / "b.json")
    with pytest.raises(UsageError, match="not found"):
        load_baseline(tmp_path / "missing.json")
    for bad, why in (('[3]', "bundles[0] is not an object"),
                     ('[{"name": "x"}]', "bundles[0] needs 'name' and an integer 'disk_bytes'"),
                     ('[{"name": "x", "disk_bytes": 5, "components": [{"name": "torch"}]}]',
                      "bundles[0] needs 'components'")):
        (tmp_path / "b.json").write_text('{"schema_version": 1, "bundles": ' + bad + '}')
        with pytest.raises(UsageError, match=re.escape(why)):
            load_baseline(tmp_path / "b.json")


def test_slim_budget_per_accelerator_counts_the_bundle_without_its_models(tmp_path: Path) -> None:
    b = load_budgets(write(tmp_path, 'slim = { accelerators = { cpu = 1000, cuda = 5000 } }\n'))
    slim = {"name": "b-slim", "flavor": "slim", "accelerator": "cpu", "disk_bytes": 1500, "compressed_bytes": 700,
            "components": [{"name": "model:demo-clip", "disk_bytes": 500, "compressed_bytes": 300},
                           {"name": "onnxruntime", "disk_bytes": 1000, "compressed_bytes": 400}]}
    (check,) = check_budgets(slim, b)
    assert check.ok and check.actual == 1000 and check.what == "total:cpu"
    slim["disk_bytes"] = 1501
    (check,) = check_budgets(slim, b)
    assert not check.ok and "without models" in check.line and "on cpu profiles" in check.line
    assert [c.ok for c in check_budgets({**slim, "accelerator": "cuda"}, b)] == [True]
    assert check_budgets({**slim, "flavor": "full"}, b) == []
