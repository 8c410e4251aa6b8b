"""`mlfreeze init` in a fresh directory, then what a user hits first: refusals with exit 2, through nox too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlfreeze import cli
from mlfreeze.models.manifest import check_set, load_manifest
from mlfreeze.project.config import load_config


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clipdemo")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        assert cli.main(["init", "--app", "clipdemo", "--no-lock"]) == 0
    finally:
        os.chdir(cwd)
    return root


def test_init_writes_a_loadable_clip_only_project(project):
    cfg = load_config(project)
    assert (cfg.app, cfg.entry.name, cfg.model_set, cfg.uses) == ("clipdemo", "clipdemo.py", "demo", ("clip",))
    models = check_set(load_manifest(cfg.manifest), "demo")
    assert [m.id for m in models] == ["demo-clip"]  # only the CLIP for a CLIP-only app
    assert (project / "mlfreeze-models" / "goldens" / "demo-clip.json").is_file()
    assert cfg.manifest == project / "mlfreeze-models" / "models.toml"
    assert "make_sessions(globals(), mlfreeze='build/mlfreeze-" in (project / "noxfile.py").read_text()
    assert list((project / "build").glob("mlfreeze-*.whl")), "a wheel of the running mlfreeze"
    for wf in ("build.yml", "lock.yml"):
        assert (project / ".github" / "workflows" / wf).is_file()


def test_scaffold_app_answers_health(project):
    done = subprocess.run([sys.executable, str(project / "clipdemo.py"), "--health"], capture_output=True,
                          text=True, env={**os.environ, "MLFREEZE_MODELS_DIR": str(project / "models")})
    assert done.returncode == 0, done.stderr
    assert '"app": "clipdemo"' in done.stdout and '"models_dir_source": "MLFREEZE_MODELS_DIR"' in done.stdout


def test_init_refuses_to_overwrite_without_force(project, capsys):
    cwd = Path.cwd()
    os.chdir(project)
    try:
        assert cli.main(["init", "--app", "clipdemo", "--no-lock"]) == 2
        err = capsys.readouterr().err
        assert "refusing to overwrite" in err and "noxfile.py" in err and "models.toml" in err and "--force" in err
    finally:
        os.chdir(cwd)


def _nox(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nox", "-f", str(project / "noxfile.py"),
                           "--force-venv-backend", "none", *args], capture_output=True, text=True, cwd=project,
                          timeout=120)


def test_nox_keeps_mlfreezes_exit_code_for_an_unknown_set(project):
    done = _nox(project, "-s", "build-linux-cuda", "--", "--set", "nosuchset")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown model set 'nosuchset'" in done.stderr


@pytest.mark.parametrize("flavors", [["--flavors", "slimm"], ["--flavors"]])
def test_nox_refuses_a_bad_flavor_before_choosing_a_lock(project, flavors):
    done = _nox(project, "-s", "build-linux", "--", "--set", "demo", *flavors)  # no linux-cpu lock here
    assert done.returncode == 2, done.stdout + done.stderr
    assert "allowed flavors are full, lite, slim" in done.stderr or "--flavors needs a value" in done.stderr
    assert "lock" not in done.stderr.splitlines()[-1]


def test_nox_refuses_a_missing_lock_with_exit_2(project):
    done = _nox(project, "-s", "build-linux-cuda", "--", "--set", "demo")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "locks/linux-cuda.txt is missing" in done.stderr and "mlfreeze lock --platform linux-cuda" in done.stderr


def test_a_typo_in_the_table_name_is_exit_2(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n[tool.mlfreez]\napp = "x"\n')
    done = subprocess.run([sys.executable, "-m", "mlfreeze", "build", "--platform", "linux-cuda", "--plan"],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "MLFREEZE_PROJECT": ""})
    assert done.returncode == 2 and "tool.mlfreez" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize("linter", ["actionlint", "zizmor"])
def test_init_workflows_lint_clean(project, linter):
    exe = Path(sys.executable).with_name(linter)
    if not exe.is_file():
        found = shutil.which(linter)
        if found is None:  # the tests session installs both (noxfile.py WORKFLOW_LINTERS)
            pytest.skip(f"{linter} is not installed")
        exe = Path(found)
    workflows = project / ".github" / "workflows"
    rest = sorted(str(p) for p in workflows.glob("*.yml")) if linter == "actionlint" else ["--offline", str(workflows)]
    args = [str(exe), *rest]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_init_in_an_existing_flat_layout_project_keeps_it_installable(tmp_path_factory):
    """setuptools' flat-layout discovery takes every top-level folder named like a package (even
    without __init__.py) and refuses several: init's models and goldens live in mlfreeze-models/,
    whose name is no identifier, so `pip install .` of the project still builds."""
    pytest.importorskip("setuptools")
    tmp_path = tmp_path_factory.mktemp("flatapp")
    egg = tmp_path_factory.mktemp("egg")
    (tmp_path / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=68"]\n'
                                             'build-backend = "setuptools.build_meta"\n\n'
                                             '[project]\nname = "flatapp"\nversion = "1.0"\n')
    (tmp_path / "flatapp.py").write_text("print('hello')\n")
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert cli.main(["init", "--app", "flatapp", "--no-lock"]) == 0
    finally:
        os.chdir(cwd)
    assert load_config(tmp_path).manifest == tmp_path / "mlfreeze-models" / "models.toml"
    # what `mlfreeze init` without --no-lock adds too: locks/ (a valid package name)
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "linux-cuda.txt").write_text("# lock\n")
    def metadata() -> subprocess.CompletedProcess[str]:  # setuptools' package discovery, as `pip install .` runs it
        return subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "egg_info",
                               "--egg-base", str(egg)], capture_output=True, text=True, timeout=300,
                              cwd=tmp_path)

    done = metadata()
    assert done.returncode == 0, done.stdout + done.stderr
    assert (egg / "flatapp.egg-info" / "top_level.txt").read_text().split() == ["flatapp"]
    # what init's pinned discovery avoids: without it, locks/ alone becomes the project's only
    # "package" (a wheel without the app), and models/ + goldens/ at the top fail discovery
    pyproject = tmp_path / "pyproject.toml"
    pinned = pyproject.read_text()
    assert 'py-modules = ["flatapp"]' in pinned
    pyproject.write_text(pinned[:pinned.index("\n# pinned by mlfreeze init")] + "\n")
    done = metadata()
    assert done.returncode == 0 and (egg / "flatapp.egg-info" / "top_level.txt").read_text().split() == ["locks"]
    for sub in ("models", "goldens"):
        shutil.copytree(tmp_path / "mlfreeze-models" / sub, tmp_path / sub)
    done = metadata()
    assert done.returncode != 0 and "Multiple top-level" in done.stdout + done.stderr
