"""A real frozen lite bundle: its RECORD and BUILD-INFO, `mlfreeze audit` on it and on damaged hard-linked
copies, `mlfreeze release` refusing them by name, and the incremental skip rebuilding a damaged bundle.

The app is a tiny stdlib-only stand-in (as in test_freeze_lite.py); the coordinator's CI runs the same
audit on the linux-cuda demo build's full and lite bundles.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from lite_projects import freeze_lite, tiny_app

from mlfreeze import cli
from mlfreeze.bundle.freeze import FreezeRequest, freeze_bundle
from mlfreeze_runtime import buildinfo, record

pytest.importorskip("PyInstaller")

APP = '''\
import json, sys
if "--health" in sys.argv:
    print(json.dumps({"app": "tiny", "ml_available": False}))
'''


@pytest.fixture(autouse=True)
def _host_glibc_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle frozen here needs this machine's glibc (its libpython), newer than the profile's
    floor: allowed as a local build (MLFREEZE_GLIBC_FLOOR=host); tests/integration/test_users_machines_frozen.py
    tests the floor itself."""
    monkeypatch.setenv("MLFREEZE_GLIBC_FLOOR", "host")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("audit-lite")
    bundle, kw = freeze_lite(root, tiny_app(root, APP, version="0.0.2"))
    return {"root": root, "kw": kw, "bundle": bundle}


def _linked_copy(bundle: Path, dist: Path) -> Path:
    """A hard-linked copy (``cp -al``): a damaged file is replaced, never written through the link."""
    copy = dist / bundle.name
    shutil.copytree(bundle, copy, copy_function=os.link, symlinks=True)
    return copy


def _replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def test_freeze_writes_record_and_build_info_names_it(project: dict) -> None:
    bundle = project["bundle"]
    text = (bundle / "RECORD").read_bytes()
    lines = text.decode().splitlines()
    paths = [ln.rsplit(",", 2)[0] for ln in lines]
    assert paths == sorted(paths) and "tiny" in paths
    assert not {"RECORD", "BUILD-INFO.json", ".mlfreeze-stamp"} & set(paths)
    # only the root's RECORD, BUILD-INFO.json and stamp are left out; a dist-info's RECORD is shipped
    root_only = ("RECORD", "BUILD-INFO.json", ".mlfreeze-stamp")
    on_disk = sorted(rel for p in bundle.rglob("*") if p.is_file()
                     and (rel := p.relative_to(bundle).as_posix()) not in root_only)
    assert on_disk == sorted(paths)
    exe = bundle / "tiny"
    b64 = record.b64_digest(hashlib.sha256(exe.read_bytes()).digest())
    assert f"tiny,sha256={b64},{exe.stat().st_size}" in lines
    info = buildinfo.read(bundle)  # validated against the schema
    assert info["record"] == {"sha256": hashlib.sha256(text).hexdigest(), "files": len(lines),
                              "bytes": sum(int(ln.rsplit(",", 1)[1]) for ln in lines)}
    assert info["verification"] == {"applies": False, "reason": "this flavor ships no models", "check": "health",
                                    "passed": True, "checks": 2, "failed": 0}  # --health, nothing written inside
    assert info["unpinned_goldens"] == [] and info["models"] == []


def test_audit_passes_the_real_bundle(project: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["audit", str(project["bundle"])]) == 0
    assert f"audit: OK {project['bundle'].name}" in capsys.readouterr().out


@pytest.mark.parametrize(("damage", "code", "names"), [
    ("truncate", 3, "_internal/base_library.zip"),
    ("delete", 3, "_internal/base_library.zip"),
    ("extra", 3, "_internal/evil.so"),
    ("verification", 1, "verification"),
    ("null", 1, "verification is missing"),
])
def test_damaged_copy_fails_audit_and_release_refuses_it(project: dict, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         damage: str, code: int, names: str) -> None:
    dist = tmp_path / "dist"
    copy = _linked_copy(project["bundle"], dist)
    target = copy / "_internal" / "base_library.zip"
    info = json.loads((copy / "BUILD-INFO.json").read_text())
    if damage == "truncate":
        _replace(target, target.read_bytes()[: target.stat().st_size // 2])
    elif damage == "delete":
        target.unlink()
    elif damage == "extra":
        (copy / "_internal" / "evil.so").write_bytes(b"\x7fELF")
    elif damage == "verification":  # claims a model set's verification it never had
        info["verification"] = {"applies": True, "set": "demo", "flavor": "lite", "platform": info["platform"],
                                "report": "verify-report.json", "report_sha256": "0" * 64, "passed": True,
                                "checks": 31, "failed": 0, "warnings": 0, "skipped": 0}
        _replace(copy / "BUILD-INFO.json", json.dumps(info).encode())
    else:
        info["verification"] = None
        _replace(copy / "BUILD-INFO.json", json.dumps(info).encode())
    assert cli.main(["audit", str(copy)]) == code
    out = capsys.readouterr()
    assert names in out.out and names in out.err
    assert cli.main(["release", str(dist)]) == code
    assert names in capsys.readouterr().err
    assert not (dist / "release").exists()
    assert cli.main(["audit", str(project["bundle"])]) == 0, "the original must be untouched"


def test_release_of_the_real_bundle_leaves_the_stamp_out(project: dict, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    copy = _linked_copy(project["bundle"], dist)
    assert cli.main(["release", str(dist)]) == 0
    manifest = json.loads((dist / "release" / "release-manifest.json").read_text())
    asset = manifest["assets"][0]
    assert asset["record_sha256"] == hashlib.sha256((copy / "RECORD").read_bytes()).hexdigest()
    with tarfile.open(dist / "release" / asset["archive"]) as tar:
        names = tar.getnames()
    assert f"{copy.name}/RECORD" in names and not [n for n in names if n.endswith(".mlfreeze-stamp")]


def test_incremental_skip_rebuilds_a_damaged_bundle_saying_why(project: dict,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last: damages the module's bundle, which freeze then rebuilds."""
    bundle = project["bundle"]
    assert freeze_bundle(FreezeRequest(**project["kw"])) == bundle
    assert "RECORD intact, skipping" in capsys.readouterr().out
    target = bundle / "_internal" / "base_library.zip"
    target.write_bytes(target.read_bytes()[:-1])
    assert freeze_bundle(FreezeRequest(**project["kw"])) == bundle
    out = capsys.readouterr().out
    assert "rebuilding: the bundle no longer matches its RECORD: _internal/base_library.zip: differ: size" in out
    assert "PyInstaller done" in out
    assert cli.main(["audit", str(bundle)]) == 0


def _needed_inside(bundle: Path) -> tuple[str, str] | None:
    """(an ELF of the bundle, a library it needs by DT_NEEDED that the bundle itself holds)."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    internal = bundle / "_internal"
    for path in sorted(internal.rglob("*.so*")):
        if not path.is_file() or path.is_symlink():
            continue
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
            f.seek(0)
            for section in ELFFile(f).iter_sections():
                if isinstance(section, DynamicSection):
                    for tag in section.iter_tags("DT_NEEDED"):
                        if (internal / tag.needed).is_file() and tag.needed != path.name:
                            return path.relative_to(bundle).as_posix(), tag.needed
    return None


def test_a_deleted_dt_needed_target_is_a_closure_finding(project: dict, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("mlfreeze.bundle.closure")
    pytest.importorskip("elftools")
    found = _needed_inside(project["bundle"])
    if found is None:
        pytest.skip("no ELF of this bundle needs a library the bundle holds")
    _, library = found
    copy = _linked_copy(project["bundle"], tmp_path / "dist")
    (copy / "_internal" / library).unlink()
    assert cli.main(["audit", str(copy)]) == 3
    out = capsys.readouterr().out
    assert f"record: _internal/{library}: missing" in out
    assert any(": closure: " in line and library in line for line in out.splitlines()), out
