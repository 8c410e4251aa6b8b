"""[tool.mlfreeze]: the project being built, validated with errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlfreeze.config import SOURCE_ROOT, find_root, load_config
from mlfreeze.errors import ConfigError


def _project(tmp_path: Path, tool: str, version: str = 'version = "1.2.3"') -> Path:
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "x"\n{version}\n\n[tool.mlfreeze]\n{tool}\n')
    return tmp_path


def test_loads_minimal_project(tmp_path):
    cfg = load_config(_project(tmp_path, 'app = "demo"\nentry = "app.py"'))
    assert (cfg.app, cfg.version, cfg.model_set, cfg.flavors) == ("demo", "1.2.3", "default", ("full", "lite"))
    assert cfg.bundle_name("linux-cpu", "lite") == "demo-1.2.3-linux-cpu-lite"


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        ('app = "demo"', "key 'tool.mlfreeze.entry' is missing"),
        ('app = "demo"\nentry = "nope.py"', "does not exist"),
        ('app = "demo"\nentry = "app.py"\nflavours = []', "key 'tool.mlfreeze.flavours' is not a known key"),
        ('app = "demo"\nentry = "app.py"\nflavors = ["tiny"]', "allowed: full, lite"),
        ('app = 1\nentry = "app.py"', "key 'tool.mlfreeze.app' must be a string"),
    ],
)
def test_bad_config_names_key(tmp_path, tool, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(_project(tmp_path, tool))
    assert "pyproject.toml" in str(info.value)


def test_version_required(tmp_path):
    with pytest.raises(ConfigError, match="project.version"):
        load_config(_project(tmp_path, 'app = "a"\nentry = "app.py"', version=""))


def test_find_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFREEZE_PROJECT", raising=False)
    root = _project(tmp_path, 'app = "demo"\nentry = "app.py"')
    sub = root / "src" / "deep"
    sub.mkdir(parents=True)
    assert find_root(sub) == root
    monkeypatch.setenv("MLFREEZE_PROJECT", str(sub))
    assert find_root(root) == sub
    monkeypatch.delenv("MLFREEZE_PROJECT")
    assert find_root(Path("/")) == SOURCE_ROOT


def test_a_broken_pyproject_that_configures_mlfreeze_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFREEZE_PROJECT", raising=False)
    (tmp_path / "pyproject.toml").write_text('[project\nversion = "1"\n[tool.mlfreeze]\napp = "a"\n')
    with pytest.raises(ConfigError, match="pyproject.toml"):
        find_root(tmp_path)  # not a silent fall-back to the example app
    (tmp_path / "pyproject.toml").write_text('tool = "x"\n[project]\nversion = "1"\n')
    assert find_root(tmp_path) == SOURCE_ROOT  # no [tool.mlfreeze]: not an mlfreeze project
    with pytest.raises(ConfigError, match=r"no \[tool.mlfreeze\] table"):
        load_config(tmp_path)


def test_this_repository_builds_the_example_app():
    cfg = load_config(SOURCE_ROOT)
    assert cfg.app == "photo-search" and cfg.entry.name == "__main__.py"
