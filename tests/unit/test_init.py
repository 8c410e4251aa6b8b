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
