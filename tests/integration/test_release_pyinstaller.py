"""A real PyInstaller onedir bundle goes through ``mlfreeze release`` and still runs after unpacking."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from release_bundles import EPOCH, seal, tree_bytes

ROOT = Path(__file__).resolve().parents[2]
NAME = "photo-search-0.1.0-linux-cpu-lite"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("PyInstaller") is None, reason="PyInstaller not installed")


@pytest.fixture(autouse=True)
def _host_glibc_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle frozen here needs this machine's glibc (its libpython), newer than the profile's
    floor: allowed as a local build (MLFREEZE_GLIBC_FLOOR=host); tests/integration/test_users_machines_frozen.py
    tests the floor itself."""
    monkeypatch.setenv("MLFREEZE_GLIBC_FLOOR", "host")


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("pyi")
    (work / "hello.py").write_text('import json, sys\nprint(json.dumps({"ok": True, "argv": sys.argv[1:]}))\n')
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--onedir", "--name", "photo-search",
                    "--distpath", str(work / "out"), "--workpath", str(work / "build"), "--specpath", str(work),
                    str(work / "hello.py")], check=True, capture_output=True, timeout=600)
    dist = work / "dist"
    dist.mkdir()
    bundle = dist / NAME
    shutil.move(work / "out" / "photo-search", bundle)
    seal(bundle, "linux-cpu", "lite")  # RECORD + BUILD-INFO, as freeze writes them
    return dist


def _release(dist: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SOURCE_DATE_EPOCH": EPOCH}
    return subprocess.run([sys.executable, "-m", "mlfreeze", "release", str(dist), "--version", "v0.1.0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_real_bundle_release_is_reproducible_and_runs(frozen: Path, tmp_path: Path) -> None:
    first = _release(frozen)
    assert first.returncode == 0, first.stderr
    before = tree_bytes(frozen / "release")
    second = _release(frozen)
    assert second.returncode == 0, second.stderr
    assert tree_bytes(frozen / "release") == before
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=frozen / "release", check=True, capture_output=True)
    with tarfile.open(frozen / "release" / f"{NAME}.tar.gz") as tar:
        tar.extractall(tmp_path, filter="tar")
    exe = tmp_path / NAME / "photo-search"
    ran = subprocess.run([str(exe), "a", "b"], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(ran.stdout) == {"ok": True, "argv": ["a", "b"]}
    manifest = json.loads((frozen / "release" / "release-manifest.json").read_text())
    (asset,) = manifest["assets"]
    assert asset["size"]["on_disk"] == sum(p.stat().st_size for p in (frozen / NAME).rglob("*")
                                           if p.is_file() and not p.is_symlink() and p.name != ".mlfreeze-stamp")
    assert asset["size"]["compressed"] < asset["size"]["on_disk"]
