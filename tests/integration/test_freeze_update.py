"""Updates in place, proven against PyInstaller: a change to the app's own files only updates the
last bundle (no PyInstaller) into exactly what a cold freeze of the same inputs makes, and a new
outside import falls back to a full freeze, saying why in one line.

The app is a tiny multi-module stdlib-only project with data files (a folder and a file), frozen
as a lite bundle so the test stays fast."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from lite_projects import host_profile

from mlfreeze import hostinfo
from mlfreeze.bundle import freeze
from mlfreeze.bundle.freeze import AppConfig, FreezeRequest, freeze_bundle
from mlfreeze.bundle.incremental import stamped_app_files
from mlfreeze_runtime import record

pytest.importorskip("PyInstaller")

ENTRY = '''\
import sys
from tinypkg.health import health
if "--health" in sys.argv:
    print(health())
'''
HEALTH_V1 = '''\
import json, os, sys
from tinypkg import VERSION

def health():
    here = getattr(sys, "_MEIPASS", os.path.dirname(os.path.dirname(__file__)))
    with open(os.path.join(here, "assets", "greeting.txt")) as f:
        greeting = f.read().strip()
    return json.dumps({"ml_available": False, "version": VERSION, "greeting": greeting})
'''


def _project(root: Path) -> AppConfig:
    for rel, text in {"tiny.py": ENTRY, "tinypkg/__init__.py": "VERSION = 1\n", "tinypkg/health.py": HEALTH_V1,
                      "assets/greeting.txt": "hello\n", "notes.txt": "v1\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return AppConfig(app="tiny", entry=root / "tiny.py", version="0.0.1", model_set="demo",
                     sources=(root / "tiny.py",), pathex=(root,),
                     datas=((root / "assets", "assets"), (root / "notes.txt", ".")))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("update")
    kw = dict(profile=host_profile(), flavor="lite", root=root, app=_project(root), dist_dir=root / "dist",
              work_dir=root / "build")
    started = time.monotonic()
    bundle = freeze_bundle(FreezeRequest(**kw))
    return {"root": root, "kw": kw, "bundle": bundle, "cold_s": time.monotonic() - started}


def _health(bundle: Path, profile_os: str, cwd: Path) -> dict:
    exe = bundle / f"tiny{hostinfo.exe_suffix(profile_os)}"
    done = subprocess.run([str(exe), "--health"], cwd=cwd, env={}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_app_only_change_updates_in_place_and_equals_a_cold_freeze(project: dict, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root, kw, bundle = project["root"], project["kw"], project["bundle"]
    profile_os = kw["profile"].host_os
    assert "_internal/tinypkg/health.py" in stamped_app_files(bundle)
    exe_before = (bundle / "tiny").read_bytes()
    # a comment and a constant changed, a new module imported, a data file changed and one added
    (root / "tinypkg" / "__init__.py").write_text("# v2\nfrom tinypkg.extra import VERSION\n")
    (root / "tinypkg" / "extra.py").write_text("VERSION = 2\n")
    (root / "assets" / "greeting.txt").write_text("hello again\n")
    (root / "assets" / "more.txt").write_text("new data file\n")
    (root / "notes.txt").write_text("v2\n")
    capsys.readouterr()
    started = time.monotonic()
    assert freeze_bundle(FreezeRequest(**kw)) == bundle
    update_s = time.monotonic() - started
    out = capsys.readouterr().out
    assert "updating the bundle in place (no PyInstaller)" in out and "PyInstaller done" not in out, out
    assert update_s < 0.1 * project["cold_s"], (update_s, project["cold_s"])
    assert _health(bundle, profile_os, tmp_path) == {"ml_available": False, "version": 2, "greeting": "hello again"}
    assert (bundle / "tiny").read_bytes() == exe_before, "the executable must not change with the app's files"
    assert record.verify(bundle, full=True) == [], "RECORD must describe the updated bundle"
    assert not list(bundle.rglob("__pycache__")), "the self-test must not write bytecode into the bundle"
    updated = record.read(bundle)
    info = json.loads((bundle / "BUILD-INFO.json").read_text())
    assert info["selftest"]["passed"] is True and info["record"]["files"] == len(updated)

    cold = freeze_bundle(FreezeRequest(**{**kw, "dist_dir": root / "dist-cold", "force": True}))
    assert "PyInstaller done" in capsys.readouterr().out
    cold_rows = record.read(cold)
    assert sorted(updated) == sorted(cold_rows), "the same files"
    differ = [p for p in updated if updated[p] != cold_rows[p]]
    assert differ == [], f"an update in place must hash like a cold freeze: {differ}"
    assert {"_internal/tinypkg/extra.py", "_internal/assets/more.txt", "_internal/notes.txt"} <= set(updated)


def test_a_new_outside_import_falls_back_to_a_full_freeze(project: dict, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root, kw = project["root"], project["kw"]
    (root / "tinypkg" / "extra.py").write_text("import packaging.version\nVERSION = 3\n")

    class FullFreeze(Exception):
        pass

    def stop(plan: freeze.FreezePlan) -> Path:  # the full freeze itself is proven by the test above
        raise FullFreeze(plan.name)

    monkeypatch.setattr(freeze, "run_pyinstaller", stop)
    capsys.readouterr()
    with pytest.raises(FullFreeze):
        freeze_bundle(FreezeRequest(**kw))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "full freeze:" in ln]
    assert len(lines) == 1, lines
    assert "the app's imports of outside modules changed: +packaging (packaging " in lines[0]
    assert "+packaging.version" in lines[0] and "updating the bundle in place" not in lines[0]
