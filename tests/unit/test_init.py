"""`mlfreeze init`: the files it writes (pure parts), checked by loading them as mlfreeze would."""

from __future__ import annotations

from pathlib import Path

import pytest

import mlfreeze.specs
from mlfreeze import init
from mlfreeze.errors import UsageError
from mlfreeze.models.manifest import check_set, load_manifest
from mlfreeze.project.config import load_config

SPECS = Path(mlfreeze.specs.__file__).resolve().parent


def test_names():
    assert init.names_for("clip-demo.v2", Path("/x")) == init.Names(app="clip-demo.v2", module="clip_demo_v2")
    assert init.names_for(None, Path("/tmp/MyApp")).app == "MyApp"
    with pytest.raises(UsageError, match="starts with a letter"):
        init.names_for("1app", Path("/x"))


def test_demo_manifest_holds_only_the_clip_with_relative_urls(tmp_path):
    text = init.demo_manifest_text((SPECS / "models.toml").read_text())
    (tmp_path / "models.toml").write_text(text)
    manifest = load_manifest(tmp_path / "models.toml")
    (clip,) = check_set(manifest, "demo")
    assert clip.id == "demo-clip" and set(manifest.models) == {"demo-clip"}
    assert [a.urls for a in clip.artifacts] == [(f"models/demo-clip/{a.file}",) for a in clip.artifacts]
    assert [src.is_file() for src, _ in init.demo_files()] == [True] * (len(clip.artifacts) + 1)
    assert {rel.name for _, rel in init.demo_files()} == {a.file for a in clip.artifacts} | {"demo-clip.json"}
    ours = load_manifest(SPECS / "models.toml").models["demo-clip"]
    assert [a.sha256 for a in clip.artifacts] == [a.sha256 for a in ours.artifacts]  # the same pins
    assert clip.verify == ours.verify  # thresholds and probes carried over


def test_written_pyproject_loads_as_a_clip_only_project(tmp_path):
    names = init.Names(app="clipdemo", module="clipdemo")
    (tmp_path / "pyproject.toml").write_text(init.pyproject_text(names, "clipdemo.py"))
    (tmp_path / "clipdemo.py").write_text(init.app_text(names))
    (tmp_path / "mlfreeze-models").mkdir()
    (tmp_path / "mlfreeze-models" / "models.toml").write_text("[sets]\n[models]\n")
    cfg = load_config(tmp_path)
    assert (cfg.app, cfg.uses, cfg.model_set, cfg.manifest) == ("clipdemo", ("clip",), "demo",
                                                                tmp_path / "mlfreeze-models" / "models.toml")
    assert 'APP = "clipdemo"' in (tmp_path / "clipdemo.py").read_text()


def test_plan_files_in_empty_and_existing_directories(tmp_path):
    names = init.Names(app="clipdemo", module="clipdemo")
    files, entry, action = init.plan_files(tmp_path, names)
    assert action == "create" and entry == "clipdemo.py"
    assert Path("clipdemo.py") in files and Path(".gitignore") in files
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "pyproject.toml").write_text('[project]\nname = "clipdemo"\nversion = "2"\n')
    (existing / "src" / "clipdemo").mkdir(parents=True)
    (existing / "src" / "clipdemo" / "__main__.py").write_text("")
    files, entry, action = init.plan_files(existing, names)
    assert action == "append" and entry == "src/clipdemo/__main__.py" and Path("clipdemo.py") not in files
    (existing / "src" / "clipdemo" / "__main__.py").unlink()
    with pytest.raises(UsageError, match="no entry script"):
        init.plan_files(existing, names)


def test_noxfile_names_where_mlfreeze_comes_from():
    text = init.noxfile_text("build/mlfreeze-0.1.0-py3-none-any.whl")
    assert "make_sessions(globals(), mlfreeze='build/mlfreeze-0.1.0-py3-none-any.whl')" in text
    compile(text, "noxfile.py", "exec")


@pytest.mark.parametrize(("data", "entry", "pinned", "warned"), [
    ({}, "app.py", 'py-modules = ["app"]', False),                       # setuptools by default
    ({"build-system": {"build-backend": "setuptools.build_meta"}}, "app/__main__.py",
     'include = ["app", "app.*"]', False),
    ({"build-system": {"build-backend": "hatchling.build"}}, "app.py", None, False),  # not setuptools' rules
    ({}, "src/app/__main__.py", None, False),                            # src-layout looks in src/ only
    ({"tool": {"setuptools": {"py-modules": ["app"]}}}, "app.py", None, False),  # already explicit
    ({"tool": {"setuptools": {"zip-safe": False}}}, "app.py", None, True),  # a key would go inside it
    ({"tool": {"setuptools": {"zip-safe": False}}}, "app/__main__.py", 'include = ["app", "app.*"]', False),
])
def test_discovery_is_pinned_where_setuptools_would_take_locks_for_a_package(data, entry, pinned, warned):
    table, warning = init.discovery_table(data, entry, "app")
    assert (table is None) == (pinned is None) and (pinned is None or pinned in table)
    assert (warning is not None) == warned
    if table:
        import tomllib

        merged = tomllib.loads("[project]\nname = 'x'\n" + table)  # appends as valid TOML
        assert "setuptools" in merged["tool"]


def test_app_name_defaults_to_the_projects_name(tmp_path):
    assert init.names_for(None, tmp_path).app == tmp_path.name
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "tiny-tool"\nversion = "1"\n')
    assert init.names_for(None, tmp_path) == init.Names(app="tiny-tool", module="tiny_tool")
    assert init.names_for("other", tmp_path).app == "other"


@pytest.mark.parametrize(("deps", "uses", "notes"), [
    (["open-clip-torch>=2.24", "insightface>=0.7", "faiss-cpu>=1.8", "onnxruntime", "fastapi"],
     ("clip", "faces", "faiss"), ["open-clip-torch -> clip", "insightface -> faces", "faiss-cpu -> faiss"]),
    (["Open_Clip_Torch", "numpy"], ("clip",), ["open-clip-torch -> clip"]),
    (["faiss-gpu-cu12==1.8.0; sys_platform == 'linux'", "insightface"], ("faces", "faiss"),
     ["insightface -> faces", "faiss-gpu-cu12 -> faiss"]),
    (["clip @ git+https://example.invalid/openai/CLIP"], ("clip",), ["clip -> clip"]),
    (["fastapi", "uvicorn"], ("clip",), []),  # none named: the demo set's CLIP, and nothing claimed
])
def test_uses_is_inferred_from_the_dependencies(deps, uses, notes):
    assert init.infer_uses(deps) == (uses, notes)


def test_the_table_has_no_budget_an_ordinary_app_fails(tmp_path):
    names = init.Names(app="svc", module="svc")
    (tmp_path / "svc.py").write_text("")
    (tmp_path / "mlfreeze-models").mkdir()
    (tmp_path / "mlfreeze-models" / "models.toml").write_text("[sets]\n[models]\n")
    (tmp_path / "pyproject.toml").write_text(init.pyproject_text(names, "svc.py", ("clip", "faces")))
    cfg = load_config(tmp_path)
    assert cfg.uses == ("clip", "faces")
    assert not cfg.budgets.totals and not cfg.budgets.components and not cfg.budgets.accelerators
    assert '# lite = "150 MB"' in init.tool_table(names, "svc.py")  # written commented, as an example


def _repo(tmp_path: Path) -> Path:
    """A git repository whose backend/ folder is an existing src-layout project with one script."""
    (tmp_path / ".git").mkdir()
    project = tmp_path / "backend"
    (project / "src" / "svc").mkdir(parents=True)
    (project / "src" / "svc" / "__init__.py").write_text("")
    (project / "src" / "svc" / "server.py").write_text("def main():\n    return 0\n")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "svc"\nversion = "1"\nrequires-python = ">=3.12"\n'
        'dependencies = ["open-clip-torch", "insightface", "faiss-cpu"]\n[project.scripts]\nsvc = "svc.server:main"\n')
    return project


def test_workflows_of_a_project_in_a_repository_folder_go_to_the_repository_root(tmp_path):
    import yaml

    project = _repo(tmp_path)
    assert init.workflows_home(project) == (Path("../.github/workflows"), "backend")
    assert init.workflows_home(tmp_path) == (Path(".github/workflows"), "")
    files, entry, action = init.plan_files(project, init.names_for(None, project))
    assert (entry, action) == ("svc.server:main", "append")
    assert set(files) >= {Path("../.github/workflows/build.yml"), Path("../.github/workflows/lock.yml")}
    assert not [p for p in files if p.parts[0] == ".github"]
    build = yaml.safe_load(files[Path("../.github/workflows/build.yml")])
    job = build["jobs"]["build"]
    assert job["defaults"] == {"run": {"working-directory": "backend"}}
    setup = next(s for s in job["steps"] if "setup-python" in str(s.get("uses")))
    assert setup["with"]["python-version"] == "3.12"  # the project's Python, not the profile's default
    on = build.get("on", build.get(True))
    assert "backend/**" in on["push"]["paths"] and "backend/**" in on["pull_request"]["paths"]
    lock_wf = yaml.safe_load(files[Path("../.github/workflows/lock.yml")])
    upload = next(s for s in lock_wf["jobs"]["lock"]["steps"] if "upload-artifact" in str(s.get("uses")))
    assert upload["with"]["path"] == "backend/locks/${{ matrix.platform }}*.txt"
    assert lock_wf["jobs"]["lock"]["defaults"] == {"run": {"working-directory": "backend"}}


def test_an_existing_workflow_of_the_repository_is_not_overwritten(tmp_path, monkeypatch, capsys):
    from mlfreeze import cli

    project = _repo(tmp_path)
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "build.yml").write_text("name: theirs\n")
    before = (project / "pyproject.toml").read_text()
    monkeypatch.chdir(project)
    assert cli.main(["init", "--no-lock"]) == 2  # refused before anything is built or written
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "../.github/workflows/build.yml" in err and "--force" in err
    assert (tmp_path / ".github" / "workflows" / "build.yml").read_text() == "name: theirs\n"
    assert (project / "pyproject.toml").read_text() == before and not (project / "noxfile.py").exists()


def test_init_refuses_a_project_whose_python_the_build_profile_lacks(tmp_path, monkeypatch, capsys):
    from mlfreeze import cli

    project = _repo(tmp_path)
    text = (project / "pyproject.toml").read_text().replace(">=3.12", ">=3.15")
    (project / "pyproject.toml").write_text(text)
    monkeypatch.chdir(project)
    assert cli.main(["init", "--no-lock"]) == 2
    err = capsys.readouterr().err
    assert "'>=3.15'" in err and "linux-cuda" in err and (project / "pyproject.toml").read_text() == text


def test_several_scripts_are_a_one_line_question(tmp_path, monkeypatch, capsys):
    from mlfreeze import cli

    project = _repo(tmp_path)
    (project / "src" / "svc" / "worker.py").write_text("def run():\n    return 0\n")
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'svc-worker = "svc.worker:run"\n')
    monkeypatch.chdir(project)
    assert cli.main(["init", "--no-lock"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "svc = svc.server:main" in err and "svc-worker = svc.worker:run" in err
    files, entry, _ = init.plan_files(project, init.names_for(None, project), entry="svc-worker")
    assert entry == "svc.worker:run"


@pytest.mark.parametrize(("before", "added"), [
    (None, ["build/", "dist/", ".nox/"]),
    ("*.pyc\n/build\n", ["dist/", ".nox/"]),
    ("build/\ndist\n/.nox/", []),
    ("# build/\n.venv/", ["build/", "dist/", ".nox/"]),  # a comment ignores nothing
])
def test_an_existing_projects_gitignore_gains_the_build_outputs_it_lacks(tmp_path, before, added):
    from mlfreeze.init import ignore_build_outputs

    path = tmp_path / ".gitignore"
    if before is not None:
        path.write_text(before)
    assert ignore_build_outputs(path) == added
    text = path.read_text() if path.exists() else None
    if not added:
        assert text == before  # untouched
    else:
        assert text is not None and text.startswith(before or "") and all(f"\n{a}\n" in "\n" + text for a in added)
    assert ignore_build_outputs(path) == []  # once is enough
