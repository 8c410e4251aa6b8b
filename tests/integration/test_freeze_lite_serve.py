"""Real lite freezes of servers and CLI apps whose build runs their real entry: a server that
imports numpy, Pillow, jinja2 and requests at start starts from its lite bundle; one that imports
the ML stack at start fails the build naming the start step; a CLI app's smoke command that
writes beside its executable fails the build naming the file and the data directory."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from lite_projects import freeze_lite, tiny_app

from mlfreeze.errors import VerificationError
from mlfreeze_runtime import record
from mlfreeze_runtime.contract import CONTRACT_FILE, parse_contract

pytest.importorskip("PyInstaller")

SERVER = '''
import json, os, sqlite3, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

import jinja2, numpy, PIL.Image, requests  # what an ordinary app imports at start (lite keeps them)
{extra}
from mlfreeze_runtime.app import data_dir

db = sqlite3.connect(data_dir("tiny") / "tiny.db")
db.execute("CREATE TABLE IF NOT EXISTS t (x)")
db.commit()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"ok": True, "sum": int(numpy.arange(4).sum())}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''
CONTRACT = {"serve": {"port_env": "PORT", "ready": "/healthz", "ready_timeout": 60,
                      "probes": [{"input": "text", "path": "/embed", "json": {"text": "{text}"},
                                  "vector": "/embedding"}]}}

CLI = '''
import os, sys
if "--version" in sys.argv:
    # the mistake of issue 20: a cache written beside the executable, inside the bundle
    with open(os.path.join(os.path.dirname(sys.executable), "cache.txt"), "w") as f:
        f.write("1")
    print("tiny 1.0")
'''


def _freeze(root: Path, source: str, contract: dict) -> Path:
    app = replace(tiny_app(root, source, version="0.0.1"), contract=parse_contract(contract))
    return freeze_lite(root, app)[0]


def test_a_lite_server_that_imports_the_apps_libraries_starts(tmp_path: Path) -> None:
    bundle = _freeze(tmp_path, SERVER.format(extra=""), CONTRACT)
    info = json.loads((bundle / "BUILD-INFO.json").read_text())
    assert info["verification"]["check"] == "serve" and info["verification"]["passed"] is True
    assert info["selftest"] == {"passed": True, "checks": 2, "failed": 0}  # the start, nothing written inside
    assert (bundle / "_internal" / "numpy").is_dir() and (bundle / "_internal" / "PIL").is_dir()
    assert not (bundle / "_internal" / "torch").exists()
    # the contract ships beside the executables, pinned by RECORD; the run left no file in the bundle
    assert json.loads((bundle / CONTRACT_FILE).read_text())["serve"]["ready"] == "/healthz"
    assert CONTRACT_FILE in record.read(bundle)
    assert record.verify(bundle, full=False) == []


def test_a_lite_server_that_needs_the_ml_stack_at_start_fails_the_build_naming_the_step(tmp_path: Path) -> None:
    with pytest.raises(VerificationError) as err:
        _freeze(tmp_path, SERVER.format(extra="import torch"), CONTRACT)
    message = err.value.message
    assert err.value.exit_code == 1 and "(serve): start: the server exited with code" in message, message
    assert "No module named 'torch'" in message
    assert [p.name.endswith(".FAILED") for p in (tmp_path / "dist").iterdir()] == [True]


def test_a_smoke_command_that_writes_inside_the_bundle_fails_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(VerificationError) as err:
        _freeze(tmp_path, CLI, {"smoke": {"args": ["--version"], "exit_code": 0}})
    message = err.value.message
    assert "the app wrote inside the bundle during its run: cache.txt (new)" in message, message
    assert "mlfreeze_runtime.app.data_dir()" in message and "data directory was" in message
    failed = next((tmp_path / "dist").iterdir())
    # a standard-library app's lite bundle holds no numpy: the runtime's ML loaders are left to the app
    assert not (failed / "_internal" / "numpy").exists() and not (failed / "_internal" / "PIL").exists()
