"""A real team's project adopted as it is, as a new user would: the failures the issue lists, reproduced.

The project: a folder ``backend/`` of a git repository, a ``src/`` package started by a
``[project.scripts]`` entry point, CLIP, InsightFace and FAISS among its dependencies. Before:

1. ``mlfreeze init`` found no entry ("no entry script was found") and could not be told one;
2. the build's Python was the profile's, whatever ``requires-python`` said, and a requires-python
   no profile Python meets failed late, after installing;
3. (the lock's index strategy: tests/integration/test_lock_indexes.py);
4. init wrote ``uses = ["clip"]``, a lite budget any server app exceeds, and the workflows into
   ``backend/.github/``, which GitHub ignores;
5. a second build with nothing changed froze again: the digest walked the project folder, with the
   ``.nox/``, ``dist/`` and ``build/`` every build rewrites.

The lite bundle is frozen for real (PyInstaller) from the entry point's launcher.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lite_projects import host_profile

from mlfreeze import cli, hostinfo
from mlfreeze.bundle.freeze import FreezeRequest, freeze_bundle, load_app_config, plan_freeze, rebuild_reason
from mlfreeze.project.config import load_config

PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "photo-search"
version = "0.3.0"
requires-python = ">=3.11"
dependencies = ["fastapi>=0.110", "uvicorn>=0.29", "open-clip-torch>=2.24", "insightface>=0.7", "faiss-cpu>=1.8",
                "onnxruntime>=1.17", "numpy", "pillow"]

[project.scripts]
photo-search = "photosearch.server:main"
"""
SERVER = '''import json
import sys

from photosearch import db
from .version import VERSION


def main() -> int:
    if "--health" in sys.argv:
        print(json.dumps({"app": "photo-search", "version": VERSION, "ml_available": False, "rows": db.ROWS}))
        return 0
    print("serving")
    return 3
'''


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("repo")
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    backend = top / "backend"
    _write(backend, {"pyproject.toml": PYPROJECT, "src/photosearch/__init__.py": "",
                     "src/photosearch/server.py": SERVER, "src/photosearch/db.py": "ROWS = 0\n",
                     "src/photosearch/version.py": "VERSION = '0.3.0'\n",
                     "tests/test_server.py": "import photosearch\n"})
    cwd = Path.cwd()
    os.chdir(backend)
    try:
        assert cli.main(["init", "--no-lock"]) == 0
    finally:
        os.chdir(cwd)
    return backend


def test_init_takes_the_script_infers_uses_and_writes_no_budget(repo: Path) -> None:
    cfg = load_config(repo)
    assert cfg.entry_point == "photosearch.server:main" and cfg.entry == repo / "src" / "photosearch" / "server.py"
    assert cfg.uses == ("clip", "faces", "faiss")
    assert not cfg.budgets.totals and not cfg.budgets.accelerators
    assert "# [tool.mlfreeze.budgets]" in (repo / "pyproject.toml").read_text()


def test_init_puts_the_workflows_where_github_reads_them(repo: Path) -> None:
    top = repo.parent
    assert not (repo / ".github").exists()
    workflows = sorted((top / ".github" / "workflows").glob("*.yml"))
    assert [p.name for p in workflows] == ["build.yml", "lock.yml"]
    for wf in workflows:
        assert 'working-directory: "backend"' in wf.read_text()
    exe = shutil.which("actionlint", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if exe is None:
        pytest.skip("actionlint is not installed")
    done = subprocess.run([exe, *map(str, workflows)], capture_output=True, text=True, cwd=top)
    assert done.returncode == 0, done.stdout + done.stderr


def test_init_is_told_an_entry_nobody_would_guess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, {"pyproject.toml": '[project]\nname = "svc"\nversion = "1"\n', "server/run.py": "print(1)\n"})
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "--no-lock"]) == 2
    assert "--entry" in capsys.readouterr().err  # says how to name it
    assert cli.main(["init", "--no-lock", "--entry", "server/run.py"]) == 0
    assert load_config(tmp_path).entry == tmp_path / "server" / "run.py"


def _nox(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    return subprocess.run([sys.executable, "-m", "nox", "-f", str(project / "noxfile.py"), *args],
                          capture_output=True, text=True, cwd=project, timeout=120, env=env)


def test_nox_refuses_a_python_the_profile_lacks_before_creating_a_venv(repo: Path, tmp_path: Path) -> None:
    project = tmp_path / "backend"
    shutil.copytree(repo, project, ignore=shutil.ignore_patterns("build", "dist", ".nox"))
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('">=3.11"', '">=3.15"'))
    started = time.monotonic()
    done = _nox(project, "-s", "build-linux-cuda", "--", "--set", "demo")
    took = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "'>=3.15'" in line and "linux-cuda" in line and "3.11, 3.12, 3.13, 3.14" in line
    assert not (project / ".nox").exists(), "no venv was created"
    assert took < 10, took  # nox's start-up and mlfreeze's config: no venv, no pip


@pytest.fixture(scope="module")
def frozen(repo: Path) -> dict:
    pytest.importorskip("PyInstaller")
    kw = dict(profile=host_profile(), flavor="lite", root=repo, app=load_app_config(repo))
    started = time.monotonic()
    bundle = freeze_bundle(FreezeRequest(**kw))
    return {"bundle": bundle, "kw": kw, "cold_s": time.monotonic() - started}


def test_the_entry_points_bundle_runs_its_function(frozen: dict, tmp_path: Path) -> None:
    exe = frozen["bundle"] / f"photo-search{hostinfo.exe_suffix(frozen['kw']['profile'].host_os)}"
    done = subprocess.run([str(exe), "--health"], cwd=tmp_path, env={}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"app": "photo-search", "version": "0.3.0", "ml_available": False, "rows": 0}
    served = subprocess.run([str(exe)], cwd=tmp_path, env={}, capture_output=True, text=True, timeout=60)
    assert (served.returncode, served.stdout) == (3, "serving\n")  # the launcher exits with what main returns


def test_a_second_build_with_nothing_changed_skips_the_freeze(frozen: dict, repo: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    for top in (".nox/build-linux-cuda/lib/python3.11/site-packages/photosearch", "dist/other", "build/leftover",
                ".git/objects"):
        _write(repo, {f"{top}/{i}.py": f"X = {time.time()}\n" for i in range(200)})
    capsys.readouterr()
    started = time.monotonic()
    assert freeze_bundle(FreezeRequest(**{**frozen["kw"], "app": load_app_config(repo)})) == frozen["bundle"]
    assert "inputs unchanged" in capsys.readouterr().out
    assert time.monotonic() - started < 0.2 * frozen["cold_s"]


def test_a_change_to_an_imported_module_rebuilds(frozen: dict, repo: Path) -> None:
    module = repo / "src" / "photosearch" / "version.py"  # imported relatively by the entry point's module
    text = module.read_text()
    module.write_text("VERSION = '0.3.1'\n")
    try:
        plan = plan_freeze(FreezeRequest(**{**frozen["kw"], "app": load_app_config(repo)}))
        assert str(rebuild_reason(plan)).startswith("inputs changed")
    finally:
        module.write_text(text)
