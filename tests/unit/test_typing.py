"""mypy sees across mlfreeze's modules: a wrong type from one module into another is an error.

With the old folder-to-import-name mapping every ``mlfreeze.*`` import resolved to ``Any`` and this
file passed. The check runs mypy in-process (``mypy.api``) with the project's own configuration
(pyproject.toml ``[tool.mypy]``), the one ``nox -s lint`` uses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
api = pytest.importorskip("mypy.api")


def _mypy(tmp_path: Path, source: str) -> tuple[str, int]:
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"),
                                "--no-error-summary", str(probe)])
    return out + err, status


def test_a_wrong_type_across_modules_is_reported(tmp_path: Path) -> None:
    out, status = _mypy(tmp_path, "from mlfreeze.platforms.profiles import load_profile\n"
                                  "x: int = load_profile('linux-cuda').name\n"
                                  "reveal_type(load_profile('linux-cuda'))\n")
    assert status == 1
    assert 'Incompatible types in assignment (expression has type "str", variable has type "int")' in out
    assert 'Revealed type is "mlfreeze.platforms.profiles.Profile"' in out


def test_the_right_type_passes(tmp_path: Path) -> None:
    out, status = _mypy(tmp_path, "from mlfreeze.platforms.profiles import load_profile\n"
                                  "x: str = load_profile('linux-cuda').name\n")
    assert status == 0, out
