"""``--pin-goldens`` writes the measured reference_sims into the manifest for CLIP models that declare
none: the text edited in place (comments and other tables untouched), read back, never half-written."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from mlfreeze.errors import ConfigError
from mlfreeze.models.verification import measured_reference_sims, reference_sims_lines, write_reference_sims
from mlfreeze_runtime.verify.result import ModelRef

MANIFEST = """# my models
[sets]
s = ["a", "b"]

[models.a]
kind = "clip"

[models.a.verify]  # thresholds
quick_gelu = true
zero_shot = [{ image = "x", caption = "cx" }, { image = "y", caption = "cy" }]

[models.b.verify]
reference_sims = [0.5, 0.6]
"""


def _refs() -> list[ModelRef]:
    shots = [{"image": "x", "caption": "cx"}, {"image": "y", "caption": "cy"}]
    return [ModelRef(id=m, kind="clip", arch="A", embed_dim=2, files={}, verify={"zero_shot": shots})
            for m in ("a", "b")]


VALUES = {m: {"sims/x": [0.12345678, 0.9], "sims/y": [0.1, 0.87654321]} for m in ("a", "b")}


def test_measured_sims_are_the_diagonal_in_probe_order() -> None:
    assert measured_reference_sims(_refs(), VALUES)["a"] == [0.12345678, 0.87654321]
    assert reference_sims_lines(_refs(), VALUES)[0] == "[models.a.verify] reference_sims = [0.123457, 0.876543]"


def test_written_only_where_none_is_declared(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(MANIFEST)
    assert write_reference_sims(path, measured_reference_sims(_refs(), VALUES)) == ["a"]
    doc = tomllib.loads(path.read_text())
    assert doc["models"]["a"]["verify"]["reference_sims"] == [0.123457, 0.876543]
    assert doc["models"]["b"]["verify"]["reference_sims"] == [0.5, 0.6]  # declared: kept
    assert path.read_text().startswith("# my models\n") and "# thresholds" in path.read_text()
    assert write_reference_sims(path, measured_reference_sims(_refs(), VALUES)) == []  # now declared


def test_a_table_it_cannot_find_is_one_error_and_the_file_stays(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    text = MANIFEST.replace("[models.a.verify]  # thresholds", "[models.a]\nverify = {quick_gelu = true}\n[x]")
    path.write_text(text.replace('kind = "clip"\n\n[models.a]\n', ""))
    before = path.read_text()
    with pytest.raises(ConfigError, match=r"no single \[models.a.verify\] header"):
        write_reference_sims(path, {"a": [0.1, 0.2]})
    assert path.read_text() == before and not list(tmp_path.glob(".*tmp"))
