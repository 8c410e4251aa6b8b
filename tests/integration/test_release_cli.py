"""``mlfreeze release`` and ``python -m mlfreeze.release.matrix`` as real processes, checked with real tools."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from release_bundles import (
    EPOCH,
    fake_bundles_have_no_closure,  # noqa: F401  (autouse)
    make_bundle,
    tree_bytes,
)

from mlfreeze import cli

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=300, check=False)


def _dist(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    make_bundle(dist, "linux-cpu", "lite")
    make_bundle(dist, "linux-cuda", "full", seed=b"cuda")
    make_bundle(dist, "win-cuda", "full", seed=b"win")
    return dist


def test_release_twice_is_byte_identical_and_sha256sum_checks(tmp_path: Path) -> None:
    dist = _dist(tmp_path)
    first = _run("-m", "mlfreeze", "release", str(dist), "--version", "v0.1.0", SOURCE_DATE_EPOCH=EPOCH)
    assert first.returncode == 0, first.stderr
    before = tree_bytes(dist / "release")
    shutil.rmtree(dist / "release")
    second = _run("-m", "mlfreeze", "release", str(dist), "--version", "v0.1.0", SOURCE_DATE_EPOCH=EPOCH)
    assert second.returncode == 0, second.stderr
    assert tree_bytes(dist / "release") == before
    if not shutil.which("sha256sum"):
        pytest.skip("sha256sum (coreutils) is not installed")
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dist / "release", capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == len(before) - 1


def test_system_tar_and_unzip_see_the_modes(tmp_path: Path) -> None:
    dist = _dist(tmp_path)
    assert _run("-m", "mlfreeze", "release", str(dist), SOURCE_DATE_EPOCH=EPOCH).returncode == 0
    out = tmp_path / "x"
    out.mkdir()
    tar = shutil.which("tar")
    archive = dist / "release" / "photo-search-0.1.0-linux-cuda-full.tar.gz"
    if tar:
        subprocess.run([tar, "-xzf", str(archive), "-C", str(out)], check=True)
    else:  # pragma: no cover
        with tarfile.open(archive) as t:
            t.extractall(out, filter="tar")
    bundle = out / "photo-search-0.1.0-linux-cuda-full"
    assert os.access(bundle / "photo-search", os.X_OK)
    assert os.access(bundle / "photo-search-selftest", os.X_OK)
    assert not os.access(bundle / "_internal" / "libpayload.so", os.X_OK)
    ran = subprocess.run([str(bundle / "photo-search")], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "photo-search"
    original = dist / "photo-search-0.1.0-linux-cuda-full"
    shipped = tree_bytes(original)
    assert shipped.pop(".mlfreeze-stamp")  # the incremental stamp is the builder's: never archived
    assert tree_bytes(bundle) == shipped
    assert cli.main(["audit", str(bundle)]) == 0  # what was unpacked is what RECORD records
    unzip = shutil.which("unzip")
    if unzip:
        subprocess.run([unzip, "-q", str(dist / "release" / "photo-search-0.1.0-win-cuda-full.zip"), "-d",
                        str(out)], check=True)
        win = out / "photo-search-0.1.0-win-cuda-full"
        assert tree_bytes(win) == {k: v for k, v in tree_bytes(dist / "photo-search-0.1.0-win-cuda-full").items()
                                   if k != ".mlfreeze-stamp"}
        assert os.access(win / "photo-search.exe", os.X_OK)


def test_split_parts_rejoin_and_check(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    make_bundle(dist, "linux-cpu", "lite", payload=300_000, seed=b"big")
    done = _run("-m", "mlfreeze", "release", str(dist), SOURCE_DATE_EPOCH=EPOCH, MLFREEZE_SPLIT_LIMIT="64KiB")
    assert done.returncode == 0, done.stderr
    assert "GitHub refuses release assets of 2 GiB or more, so it was split into" in done.stdout
    release = dist / "release"
    manifest = json.loads((release / "release-manifest.json").read_text())
    asset = manifest["assets"][0]
    parts = sorted(release.glob(asset["archive"] + ".part*"))
    assert [p.name for p in parts] == [p["file"] for p in asset["parts"]] and len(parts) >= 5
    whole = release / asset["archive"]
    whole.write_bytes(b"".join(p.read_bytes() for p in parts))
    assert hashlib.sha256(whole.read_bytes()).hexdigest() == asset["sha256"]
    if shutil.which("sha256sum"):
        for sums in ("SHA256SUMS", asset["archive"] + ".sha256"):
            check = subprocess.run(["sha256sum", "-c", sums], cwd=release, capture_output=True, text=True,
                                   check=False)
            assert check.returncode == 0, check.stdout + check.stderr
    with tarfile.open(whole) as t:
        assert "photo-search-0.1.0-linux-cpu-lite/_internal/libpayload.so" in t.getnames()


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    done = _run("-m", "mlfreeze", "release", str(tmp_path / "dist"))
    assert done.returncode == 2
    assert done.stderr.strip().startswith("mlfreeze release: error:") and len(done.stderr.strip().splitlines()) == 1
    assert list((tmp_path / "dist").iterdir()) == []


def test_matrix_module_follows_the_profiles_directory(tmp_path: Path) -> None:
    platforms = tmp_path / "platforms"
    shutil.copytree(ROOT / "src" / "mlfreeze" / "platforms", platforms,
                    ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    full = _run("-m", "mlfreeze.release.matrix")
    assert full.returncode == 0, full.stderr
    assert len(json.loads(full.stdout)["include"]) == 7
    (platforms / "linux-cu118.toml").unlink()
    fewer = _run("-m", "mlfreeze.release.matrix", "--platforms-dir", str(platforms))
    names = [e["platform"] for e in json.loads(fewer.stdout)["include"]]
    assert "linux-cu118" not in names and len(names) == 6
    broken = platforms / "win-cpu.toml"
    broken.write_text(broken.read_text().replace('runner = "windows-2025"', 'runner = "ubuntu-24.04"'))
    refused = _run("-m", "mlfreeze.release.matrix", "--platforms-dir", str(platforms))
    assert refused.returncode == 2 and "win-cpu.toml" in refused.stderr


def test_fragments_from_two_runners_merge_and_check(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    for platform in ("linux-cuda", "win-cpu"):
        runner = tmp_path / platform
        make_bundle(runner, platform, "full", seed=platform.encode())
        done = _run("-m", "mlfreeze", "release", str(runner), "--version", "v0.1.0", SOURCE_DATE_EPOCH=EPOCH,
                    MLFREEZE_SPLIT_LIMIT="8KiB")
        assert done.returncode == 0, done.stderr
        (runner / "release").rename(dist / f"release-{platform}")
    merged = _run("-m", "mlfreeze", "release", str(dist), "--version", "v0.1.0", SOURCE_DATE_EPOCH=EPOCH)
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout.count("merged 1 assets") == 2
    manifest = json.loads((dist / "release" / "release-manifest.json").read_text())
    assert [a["platform"] for a in manifest["assets"]] == ["linux-cuda", "win-cpu"]
    assert all(len(a["parts"]) >= 2 for a in manifest["assets"])
    if shutil.which("sha256sum"):
        check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dist / "release", capture_output=True,
                               text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
