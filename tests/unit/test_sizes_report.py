"""The whole report: JSON schema, report_bundles for `mlfreeze build`, exit 5 after writing."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from test_sizes_scan import make_bundle

from mlfreeze.errors import BudgetExceeded
from mlfreeze.sizes.render import to_markdown, to_terminal
from mlfreeze.sizes.report import build_report, report_bundles


def test_the_report_follows_the_documented_schema(root: Path, tmp_path: Path) -> None:
    schema = json.loads((root / "docs" / "sizes.schema.json").read_text())
    full = make_bundle(tmp_path / "a")
    base = build_report([full])
    (tmp_path / "base.json").write_text(json.dumps(base.doc))
    doc = build_report([full, make_bundle(tmp_path / "b", flavor="lite")], baseline=tmp_path / "base.json").doc
    jsonschema.validate(doc, schema)
    assert doc["bundles"][0]["baseline"]["delta_bytes"] == 0
    text = to_terminal(doc)
    assert "cuda/cudnn" in text and "triton" in text and "~" in text
    assert "| torch |" in to_markdown(doc)


def test_report_bundles_writes_three_reports_then_raises(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.mlfreeze.budgets]\nfull = '1 MB'\n")
    reports = tmp_path / "dist" / "reports"
    with pytest.raises(BudgetExceeded) as err:
        report_bundles([bundle], reports, pyproject=pyproject)
    assert err.value.exit_code == 5 and "full budget of 1,000,000" in err.value.message
    assert sorted(p.name for p in reports.iterdir()) == ["sizes-linux-cuda.html", "sizes-linux-cuda.json",
                                                         "sizes-linux-cuda.md"]
    report = report_bundles([bundle], reports, pyproject=pyproject, check=False, platform="x")
    assert report.breaches and (reports / "sizes-x.json").is_file()
