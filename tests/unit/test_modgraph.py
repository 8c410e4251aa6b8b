"""The freeze digest is keyed on what the bundle holds: the entry's module graph inside the project,
the datas, the lock, mlfreeze's version; never .nox/, dist/, build/ or .git/ beside the entry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mlfreeze.bundle import freeze, incremental, modgraph
from mlfreeze.bundle.freeze import AppConfig, inputs_for, load_app_config, project_sources, spec_params


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


APP = {
    "app.py": "import json\nfrom helpers import fmt\nimport pkg.sub.deep as deep\n"
              "def later():\n    from pkg import lazy\n",
    "helpers.py": "from pkg.util import *\n",
    "unused.py": "X = 1\n",
    "pkg/__init__.py": "",
    "pkg/util.py": "",
    "pkg/lazy.py": "",
    "pkg/sub/__init__.py": "from . import sibling\nfrom ..util import *\n",
    "pkg/sub/deep.py": "from .sibling import x\nimportlib.import_module('pkg.plugin')\n",
    "pkg/sub/sibling.py": "",
    "pkg/plugin.py": "",
    "pyproject.toml": '[project]\nname = "app"\nversion = "1"\n\n[tool.mlfreeze]\napp = "app"\nentry = "app.py"\n'
                      'uses = ["clip"]\ndatas = [["assets", "assets"]]\n',
    "assets/logo.txt": "logo",
    "locks/linux-cuda.txt": "torch==2.14.1 \\\n    --hash=sha256:00\n",
}
WANT = {"app.py", "helpers.py", "pkg/__init__.py", "pkg/util.py", "pkg/lazy.py", "pkg/sub/__init__.py",
        "pkg/sub/deep.py", "pkg/sub/sibling.py", "pkg/plugin.py", "assets/logo.txt"}


def _junk(root: Path, n: int, marker: str) -> None:
    """A big .nox/ (a venv with modules named like the app's), dist/, build/ and .git/ beside the entry."""
    for top in (".nox/build-linux-cuda/lib/python3.11/site-packages", "dist/app-1-linux-cuda-lite/_internal",
                "build/pyinstaller", ".git/objects"):
        for i in range(n):
            _tree(root, {f"{top}/m{i}.py": f"# {marker}\n"})
    _tree(root, {"build/__init__.py": f"# {marker}\n", "dist/pkg/__init__.py": f"# {marker}\n"})


def _digest(root: Path, app: AppConfig | None = None) -> str:
    app = app or load_app_config(root)
    params = spec_params(app=app, flavor="lite", name="app-1-linux-cuda-lite", excludes=())
    return inputs_for(app=app, platform="linux-cuda", flavor="lite", params=params, models=[],
                      prune_file=root / "pyproject.toml", root=root, distributions={}).digest()


def test_the_graph_holds_the_imported_project_modules_only(tmp_path):
    root = _tree(tmp_path, APP)
    app = load_app_config(root)
    assert {p.relative_to(root).as_posix() for p in project_sources(app, root)} == WANT


def test_an_entry_at_the_root_never_reads_nox_dist_build_or_git(tmp_path, monkeypatch):
    root = _tree(tmp_path, APP)
    _junk(root, 500, "one")
    read: list[Path] = []
    for module, name in ((incremental, "hash_file"),):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda p, *a, _real=real, **k: (read.append(Path(p)), _real(p, *a, **k))[1])
    real_parse = ast.parse
    monkeypatch.setattr(modgraph.ast, "parse", lambda src, filename="<unknown>", *a, **k: (
        read.append(Path(filename)), real_parse(src, filename, *a, **k))[1])
    first = _digest(root)
    inside = [p for p in read if p.is_relative_to(root)]
    assert inside and not [p for p in inside if p.relative_to(root).parts[0] in (".nox", "dist", "build", ".git")]
    _junk(root, 500, "two")  # every build rewrites them
    assert _digest(root) == first


def test_a_change_to_an_imported_module_changes_the_digest_and_an_unimported_one_does_not(tmp_path):
    root = _tree(tmp_path, APP)
    first = _digest(root)
    (root / "unused.py").write_text("X = 2\n")
    assert _digest(root) == first, "unused.py is not in the bundle"
    for rel in ("pkg/sub/sibling.py", "pkg/plugin.py", "assets/logo.txt", "pkg/lazy.py"):
        (root / rel).write_text((root / rel).read_text() + "# changed\n")
        assert _digest(root) != first, rel
        first = _digest(root)


def test_the_lock_and_mlfreezes_version_are_inputs(tmp_path, monkeypatch):
    root = _tree(tmp_path, APP)
    first = _digest(root)
    (root / "locks" / "linux-cuda.txt").write_text("torch==2.14.1 \\\n    --hash=sha256:11\n")
    second = _digest(root)
    assert second != first
    monkeypatch.setattr(freeze.mlfreeze, "__version__", "99.0")
    assert _digest(root) != second


def test_an_entry_point_in_a_src_layout_is_traced_from_its_module(tmp_path):
    root = _tree(tmp_path, {
        "pyproject.toml": '[project]\nname = "svc"\nversion = "1"\n\n[tool.mlfreeze]\napp = "svc"\n'
                          'entry = "svc.server:main"\nuses = ["clip"]\nhiddenimports = ["svc.plugins", "torch"]\n',
        "src/svc/__init__.py": "", "src/svc/server.py": "from svc import db\nfrom . import routes\n",
        "src/svc/db.py": "", "src/svc/routes.py": "", "src/svc/plugins.py": "", "src/svc/unused.py": "",
        "tests/test_svc.py": "import svc\n"})
    app = load_app_config(root)
    assert app.entry == root / "build" / "mlfreeze-entry" / "mlfreeze_entry.py" and app.entry_point == "svc.server:main"
    assert root / "src" in app.pathex
    got = {p.relative_to(root).as_posix() for p in project_sources(app, root)}
    assert got == {"src/svc/__init__.py", "src/svc/server.py", "src/svc/db.py", "src/svc/routes.py",
                   "src/svc/plugins.py"}
    first = _digest(root, app)
    freeze.write_launcher(app)  # written at freeze time into build/: not an input of its own
    assert "from svc.server import main" in app.entry.read_text() and _digest(root, app) == first
    (root / "src" / "svc" / "db.py").write_text("X = 1\n")
    assert _digest(root, app) != first


@pytest.mark.parametrize(("module", "package", "source", "want"), [
    ("a.b.c", False, "from . import x", {"a.b", "a.b.x"}),
    ("a.b", True, "from .c import y", {"a.b.c", "a.b.c.y"}),
    ("a.b.c", False, "from ..d import z", {"a.d", "a.d.z"}),
    ("__main__", False, "import os, a.b\nfrom a import *", {"os", "a.b", "a"}),
    ("m", False, "importlib.import_module('p.q')\n__import__('r')", {"p.q", "r"}),
])
def test_imported_names(module, package, source, want):
    assert modgraph.imported_names(ast.parse(source), module, package) == want
