"""The app's own module graph, read with ast: what is the project's, what it imports from outside."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlfreeze.bundle.modgraph import app_graph, entry_module


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


PROJECT = {
    "app/__init__.py": "from .core import run  # relative, resolved against the package\n",
    "app/__main__.py": "import sys\nfrom app.cli import main\nsys.exit(main())\n",
    "app/cli.py": ("from __future__ import annotations\nimport argparse\nfrom app import core, VERSION_NAME\n"
                   "def main():\n    import json  # function-level imports count, as for PyInstaller\n"
                   "    from xml.dom import minidom\n    return 0\n"),
    "app/core.py": "from . import util\nfrom .sub.deep import thing\n\ndef run():\n    return util\n",
    "app/util.py": "import os.path\ntry:\n    import not_installed_anywhere\nexcept ImportError:\n    pass\n",
    "app/sub/__init__.py": "",
    "app/sub/deep.py": "from ..util import os\nthing = 1\nfrom concurrent import futures\n",
    "app/unused.py": "import email\n",  # reachable from nothing: PyInstaller would not collect it either
    "helper.py": "import pytest\n",
}


def test_graph_separates_own_modules_from_outside_imports(tmp_path: Path) -> None:
    _write(tmp_path, PROJECT)
    graph = app_graph(["app.__main__"], [tmp_path])
    assert list(graph.own) == ["app", "app.__main__", "app.cli", "app.core", "app.sub", "app.sub.deep", "app.util"]
    assert graph.own["app.sub"] == tmp_path / "app" / "sub" / "__init__.py"
    assert graph.external == ("__future__", "argparse", "concurrent", "concurrent.futures", "json",
                              "not_installed_anywhere", "os", "os.path", "sys", "xml", "xml.dom", "xml.dom.minidom")
    assert graph.top_level() == ["app"]
    assert graph.bundle_paths()["app/sub/__init__.py"] == tmp_path / "app" / "sub" / "__init__.py"
    assert graph.bundle_paths()["app/cli.py"] == tmp_path / "app" / "cli.py"


def test_graph_grows_with_an_import_and_hidden_roots(tmp_path: Path) -> None:
    _write(tmp_path, PROJECT)
    (tmp_path / "app" / "util.py").write_text("import helper\n")
    graph = app_graph(["app.__main__"], [tmp_path])
    assert "helper" in graph.own and "pytest" in graph.external  # an installed distribution
    graph = app_graph(["app.__main__", "app.unused"], [tmp_path])
    assert "app.unused" in graph.own and "email" in graph.external


def test_a_package_under_a_search_folder_but_not_in_it_is_outside(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """src/lib under the project root, importable through sys.path (an editable install): not the app's."""
    _write(tmp_path, {"main.py": "import lib\n", "src/lib/__init__.py": "import json\n"})
    monkeypatch.setattr(sys, "path", [str(tmp_path / "src"), *sys.path])
    graph = app_graph(["main"], [tmp_path])
    assert list(graph.own) == ["main"] and graph.external == ("lib",)


def test_a_syntax_error_is_raised(tmp_path: Path) -> None:
    _write(tmp_path, {"main.py": "import broken\n", "broken.py": "def f(:\n"})
    with pytest.raises(SyntaxError):
        app_graph(["main"], [tmp_path])


def test_entry_module_names(tmp_path: Path) -> None:
    _write(tmp_path, {"src/app/__init__.py": "", "src/app/__main__.py": "", "run.py": "", "run-app.py": "",
                      "scripts/go.py": "", "nopkg/inner/main.py": ""})
    assert entry_module(tmp_path / "src/app/__main__.py", [tmp_path, tmp_path / "src"]) == "app.__main__"
    assert entry_module(tmp_path / "run.py", [tmp_path]) == "run"
    assert entry_module(tmp_path / "run-app.py", [tmp_path]) is None  # not an identifier
    assert entry_module(tmp_path / "scripts/go.py", [tmp_path]) is None  # scripts/ has no __init__.py
    assert entry_module(tmp_path / "scripts/go.py", [tmp_path, tmp_path / "scripts"]) == "go"
    assert entry_module(tmp_path / "nopkg/inner/main.py", [tmp_path]) is None
