"""Exit 4: a real PyInstaller run that fails (an entry script with a syntax error) is one line
from `mlfreeze freeze`, exit 4, and leaves no bundle behind."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mlfreeze import _proc as proc
from mlfreeze import hostinfo
from mlfreeze.platforms.profiles import all_profiles

pytest.importorskip("PyInstaller")

PYPROJECT = """\
[project]
name = "broken"
version = "0.0.1"

[tool.mlfreeze]
app = "broken"
entry = "broken.py"
"""


def _host_profile() -> str:
    host = hostinfo.current()
    for p in all_profiles().values():
        if (p.host_os, p.host_arch) == (host.os, host.arch):
            return p.name
    pytest.skip(f"no profile builds on {host}")


def test_a_failing_pyinstaller_run_exits_4_with_one_line(tmp_path: Path) -> None:
    platform = _host_profile()
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "broken.py").write_text("import sys\n\ndef main(:\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFREEZE_PROJECT", "PYTHONPATH")}
    done = proc.capture([sys.executable, "-m", "mlfreeze", "freeze", "--platform", platform, "--flavor", "lite"],
                        cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    ours = [ln for ln in done.stderr.splitlines() if ln.startswith("mlfreeze")]
    name = f"broken-0.0.1-{platform}-lite"
    assert ours == [ln for ln in ours if ln.startswith(f"mlfreeze freeze: error: PyInstaller failed for {name}")]
    assert len(ours) == 1 and f"mlfreeze freeze --platform {platform} --flavor lite" in ours[0]
    assert "SyntaxError" in done.stderr  # PyInstaller's own reason is shown above our line
    dist = tmp_path / "dist"  # nothing half-written: no bundle, no staging copy of it
    assert not dist.exists() or not [p for p in dist.rglob("*") if name in p.name]
