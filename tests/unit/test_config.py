"""[tool.mlfreeze]: the project being built, validated with errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfreeze.errors import ConfigError
from mlfreeze.project.config import (
    SOURCE_ROOT,
    default_model_set,
    find_root,
    find_root_or_none,
    is_source_tree,
    load_config,
)


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
    monkeypatch.setenv("MLFREEZE_PROJECT", str(root))
    assert find_root(Path("/")) == root
    monkeypatch.setenv("MLFREEZE_PROJECT", str(sub))
    with pytest.raises(ConfigError, match="MLFREEZE_PROJECT"):
        find_root(root)


def test_no_pyproject_anywhere_is_an_error_not_the_example_app(monkeypatch):
    monkeypatch.delenv("MLFREEZE_PROJECT", raising=False)
    with pytest.raises(ConfigError, match="mlfreeze init"):
        find_root(Path("/"))
    assert find_root_or_none(Path("/")) is None


def test_a_broken_pyproject_that_configures_mlfreeze_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFREEZE_PROJECT", raising=False)
    (tmp_path / "pyproject.toml").write_text('[project\nversion = "1"\n[tool.mlfreeze]\napp = "a"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(find_root(tmp_path))
    (tmp_path / "pyproject.toml").write_text('tool = "x"\n[project]\nversion = "1"\n')
    assert find_root(tmp_path) == tmp_path  # the nearest pyproject.toml: never a walk to another project
    with pytest.raises(ConfigError, match=r"no \[tool.mlfreeze\] table"):
        load_config(tmp_path)


def test_near_miss_table_is_named(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nversion = "1"\n[tool.mlfreez]\napp = "a"\n')
    with pytest.raises(ConfigError, match=r"it has \[tool.mlfreez\]: a typo"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        ('app = "a"\nentry = "app.py"\nmodelset = "x"', "did you mean 'model_set'"),
        ('app = "a"\nentry = "app.py"\nuses = ["clips"]', "did you mean 'clip'"),
        ('app = "a"\nentry = "app.py"\nuses = []', "name at least one"),
        ('app = "a"\nentry = "app.py"\n[tool.mlfreeze.budgets]\nful = "1 GB"', "did you mean 'full'"),
        ('app = "a"\nentry = "app.py"\n[tool.mlfreeze.budgets]\nfull = "big"', "is not a size"),
        ('app = "a"\nentry = "app.py"\nmanifest = "nope.toml"', "nope.toml, which does not exist"),
        ('app = "a"\nentry = "app.py"\ndatas = [["x"]]', "source, destination"),
        ('app = "a"\nentry = "app.py"\ndatas = [["x", "../up"]]', "relative folder"),
        ('app = "a"\nentry = "app.py"\nprune = [{name = "n", globs = []}]', "at least one pattern"),
        ('app = "a"\nentry = "app.py"\nprune = [{name = "n", globs = ["x"], flavors = ["fat"]}]', "allowed: full"),
        ('app = "a/b"\nentry = "app.py"', "names the executable"),
    ],
)
def test_every_key_is_validated_at_load(tmp_path, tool, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_project(tmp_path, tool))


def test_all_keys_load(tmp_path):
    (tmp_path / "models.toml").write_text("[sets]\n[models]\n")
    (tmp_path / "assets").mkdir()
    tool = ('app = "a"\nentry = "app.py"\nmodel_set = "demo"\nmanifest = "models.toml"\nuses = ["clip", "faiss"]\n'
            'hiddenimports = ["json"]\nexcludes = ["tkinter"]\ndatas = [["assets/*.png", "assets"]]\n'
            'prune = [{name = "docs", globs = ["**/*.md"], flavors = ["full"]}]\nflavors = ["lite"]\n'
            'unpinned_goldens = ["m"]\nunproven_onnx = ["c"]\n[tool.mlfreeze.budgets]\nlite = "60 MB"\n')
    cfg = load_config(_project(tmp_path, tool))
    assert cfg.uses == ("clip", "faiss") and cfg.manifest == tmp_path / "models.toml"
    assert cfg.datas == ((tmp_path / "assets/*.png", "assets"),) and cfg.prune[0].globs == ("**/*.md",)
    assert cfg.budgets.totals == {"lite": 60_000_000} and cfg.flavors == ("lite",)
    assert default_model_set(tmp_path) == "demo" and cfg.unpinned_goldens == ("m",)
    assert cfg.unproven_onnx == ("c",)


def test_default_model_set_fails_loudly(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        default_model_set(tmp_path)


CHECKOUT = Path(__file__).resolve().parents[2]  # this repository (mlfreeze may be installed elsewhere)


def test_this_repository_builds_the_example_app():
    cfg = load_config(CHECKOUT)
    assert cfg.app == "photo-search" and cfg.entry.name == "__main__.py"


def test_source_root_is_a_source_tree_only_when_mlfreeze_runs_from_one():
    assert is_source_tree(CHECKOUT) and not is_source_tree(CHECKOUT / "src")
    # installed (not editable), the package's parent is site-packages: never taken for a checkout
    assert is_source_tree(SOURCE_ROOT) == (SOURCE_ROOT / "src" / "mlfreeze" / "project" / "config.py").is_file()


def test_update_root_names_signed_tuf_root_metadata(tmp_path):
    import json

    base = 'app = "demo"\nentry = "app.py"\nupdate_root = "trust/root.json"'
    with pytest.raises(ConfigError, match=r"update_root' points at .*root.json, which does not exist"):
        load_config(_project(tmp_path, base))
    (tmp_path / "trust").mkdir()
    root = tmp_path / "trust" / "root.json"
    root.write_text(json.dumps({"signed": {"_type": "targets"}, "signatures": [{"keyid": "a", "sig": "b"}]}))
    with pytest.raises(ConfigError, match="not signed TUF root metadata"):
        load_config(_project(tmp_path, base))
    root.write_text("{")
    with pytest.raises(ConfigError, match="not readable JSON"):
        load_config(_project(tmp_path, base))
    root.write_text(json.dumps({"signed": {"_type": "root"}, "signatures": [{"keyid": "a", "sig": "b"}]}))
    assert load_config(_project(tmp_path, base)).update_root == root
    assert load_config(_project(tmp_path, 'app = "demo"\nentry = "app.py"')).update_root is None


def test_slim_is_a_flavor_but_not_a_default(tmp_path):
    cfg = load_config(_project(tmp_path, 'app = "demo"\nentry = "app.py"\nflavors = ["slim", "full"]'))
    assert cfg.flavors == ("slim", "full")
    assert "slim" not in load_config(_project(tmp_path, 'app = "demo"\nentry = "app.py"')).flavors
    with pytest.raises(ConfigError, match=r"'slm' \(did you mean 'slim'\?\)"):
        load_config(_project(tmp_path, 'app = "demo"\nentry = "app.py"\nflavors = ["slm"]'))
