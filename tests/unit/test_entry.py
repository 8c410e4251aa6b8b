"""The app's entry: a script or an entry point; how init finds it in an existing project."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlfreeze.errors import ConfigError, UsageError
from mlfreeze.project.config import load_config
from mlfreeze.project.entry import (
    EntryPoint,
    find_entry,
    launcher_text,
    module_file,
    module_root,
    parse_entry_point,
)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize(("value", "want"), [
    ("pkg.cli:main", EntryPoint(module="pkg.cli", attr="main")),
    ("app : run", EntryPoint(module="app", attr="run")),
    ("pkg:cli.main", EntryPoint(module="pkg", attr="cli.main")),
    ("pkg.cli:main [server]", EntryPoint(module="pkg.cli", attr="main")),
    ("src/main.py", None), ("main.py", None), ("C:\\app\\main.py", None), ("pkg.cli:", None),
])
def test_parse_entry_point(value, want):
    assert parse_entry_point(value) == want


def test_module_file_in_flat_and_src_layouts(tmp_path):
    _tree(tmp_path, {"flat/__init__.py": "", "flat/cli.py": "", "src/deep/__init__.py": "",
                     "src/deep/sub/__init__.py": "", "src/deep/sub/run.py": ""})
    assert module_file(tmp_path, "flat.cli") == tmp_path / "flat" / "cli.py"
    assert module_file(tmp_path, "deep.sub") == tmp_path / "src" / "deep" / "sub" / "__init__.py"
    assert module_file(tmp_path, "deep.sub.run") == tmp_path / "src" / "deep" / "sub" / "run.py"
    assert module_file(tmp_path, "missing.cli") is None
    assert module_root(tmp_path / "src" / "deep" / "sub" / "run.py", "deep.sub.run") == tmp_path / "src"
    assert module_root(tmp_path / "src" / "deep" / "sub" / "__init__.py", "deep.sub") == tmp_path / "src"


def test_launcher_calls_the_function_and_exits_with_its_result(tmp_path, monkeypatch):
    _tree(tmp_path, {"pkg/__init__.py": "", "pkg/cli.py": "class App:\n    @staticmethod\n    def run():\n"
                                                          "        return 7\n\ndef main():\n    return 3\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = ((EntryPoint(module="pkg.cli", attr="main"), 3), (EntryPoint(module="pkg.cli", attr="App.run"), 7))
    for point, code in cases:
        text = launcher_text(point)
        assert str(point) in text.splitlines()[0]
        with pytest.raises(SystemExit) as done:
            exec(compile(text, "mlfreeze_entry.py", "exec"), {"__name__": "__main__"})
        assert done.value.code == code
    sys.modules.pop("pkg.cli", None)
    sys.modules.pop("pkg", None)


def test_config_accepts_an_entry_point_of_the_projects_tree(tmp_path):
    _tree(tmp_path, {"src/svc/__init__.py": "", "src/svc/server.py": "def main():\n    return 0\n",
                     "pyproject.toml": '[project]\nname = "svc"\nversion = "1"\n\n[tool.mlfreeze]\napp = "svc"\n'
                                       'entry = "svc.server:main"\nuses = ["clip"]\n'})
    cfg = load_config(tmp_path)
    assert cfg.entry == tmp_path / "src" / "svc" / "server.py" and cfg.entry_point == "svc.server:main"
    text = (tmp_path / "pyproject.toml").read_text().replace("svc.server:main", "svc.client:main")
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"entry point 'svc.client:main'.*svc/client.py"):
        load_config(tmp_path)


SCRIPTS = '[project]\nname = "svc"\nversion = "1"\n[project.scripts]\n'


def test_find_entry_takes_the_one_script_and_refuses_to_guess_among_several(tmp_path):
    import tomllib

    _tree(tmp_path, {"src/svc/__init__.py": "", "src/svc/server.py": "", "src/svc/worker.py": ""})
    one = tomllib.loads(SCRIPTS + 'svc-server = "svc.server:main"\n')
    assert find_entry(tmp_path, "svc", one, None) == ("svc.server:main", "[project.scripts] svc-server")
    several = tomllib.loads(SCRIPTS + 'svc-server = "svc.server:main"\nsvc-worker = "svc.worker:run"\n')
    with pytest.raises(UsageError) as err:
        find_entry(tmp_path, "svc", several, None)
    assert "\n" not in err.value.message and "svc-server = svc.server:main" in err.value.message
    assert "svc-worker = svc.worker:run" in err.value.message and "--entry" in err.value.message
    assert find_entry(tmp_path, "svc", several, "svc-worker") == ("svc.worker:run", "--entry")  # by its name


def test_find_entry_takes_a_script_path_or_an_entry_point(tmp_path):
    _tree(tmp_path, {"src/main.py": "", "src/svc/__init__.py": "", "src/svc/server.py": ""})
    assert find_entry(tmp_path, "svc", {}, "src/main.py") == ("src/main.py", "--entry")
    assert find_entry(tmp_path, "svc", {}, str(tmp_path / "src" / "main.py")) == ("src/main.py", "--entry")
    assert find_entry(tmp_path, "svc", {}, "svc.server:main") == ("svc.server:main", "--entry")
    for bad, match in (("src/nope.py", "no such Python script"), ("svc.nope:main", "svc/nope.py"),
                       ("/etc/hostname", "inside the project")):
        with pytest.raises(UsageError, match=match):
            find_entry(tmp_path, "svc", {}, bad)


def test_find_entry_falls_back_to_the_usual_main_locations(tmp_path):
    _tree(tmp_path, {"src/main.py": ""})
    assert find_entry(tmp_path, "svc", {}, None) == ("src/main.py", "found")
    _tree(tmp_path, {"svc/__main__.py": ""})
    assert find_entry(tmp_path, "svc", {}, None) == ("svc/__main__.py", "found")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no entry script found.*--entry"):
        find_entry(empty, "svc", {}, None)
