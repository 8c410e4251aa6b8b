"""The server contract and smoke command: [tool.mlfreeze] serve / smoke, validated once
(mlfreeze_runtime.contract) with errors that name file and key; placeholders; vector paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlfreeze.errors import ConfigError
from mlfreeze.project.config import load_config
from mlfreeze_runtime.contract import (
    CONTRACT_FILE,
    AppContract,
    ContractError,
    fill,
    locate,
    parse_contract,
    read_contract,
    write_contract,
)

SERVE = '''
[tool.mlfreeze.serve]
args = ["serve", "--host", "{host}"]
env = { APP_MODE = "test", BIND = "{host}:{port}" }
port_env = "PORT"
ready = "/healthz"
ready_timeout = 30

[[tool.mlfreeze.serve.probes]]
input = "text"
path = "/embed/text"
json = { text = "{text}", options = { normalize = true } }
vector = "/embedding"

[[tool.mlfreeze.serve.probes]]
input = "image"
path = "/embed/image"
upload = "file"
vector = "data.0.embedding"

[[tool.mlfreeze.serve.probes]]
input = "face"
method = "get"
path = "/faces"
query = { path = "{image_path}" }
vector = "/faces/0/embedding"
'''


def _project(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.0"\n\n[tool.mlfreeze]\n'
                                             f'app = "demo"\nentry = "app.py"\n{extra}\n')
    return tmp_path


def test_a_server_contract_loads_with_its_defaults(tmp_path: Path) -> None:
    serve = load_config(_project(tmp_path, SERVE)).contract.serve
    assert serve is not None
    assert (serve.ready, serve.port_env, serve.ready_timeout, serve.stop_timeout) == ("/healthz", "PORT", 30.0, 10.0)
    assert serve.args == ("serve", "--host", "{host}") and serve.env["BIND"] == "{host}:{port}"
    text, image, face = serve.probes
    assert (text.input, text.method, text.vector) == ("text", "POST", "/embedding")
    assert (image.upload, image.json) == ("file", None)
    assert (face.method, face.query) == ("GET", {"path": "{image_path}"})


def test_a_project_without_serve_or_smoke_has_an_empty_contract(tmp_path: Path) -> None:
    contract = load_config(_project(tmp_path, "")).contract
    assert contract.empty and contract == AppContract()


@pytest.mark.parametrize(("extra", "key", "words"), [
    ('[tool.mlfreeze.serve]\nport_env = "PORT"', "tool.mlfreeze.serve.ready", "is missing"),
    ('[tool.mlfreeze.serve]\nready = "healthz"\nport_env = "PORT"', "tool.mlfreeze.serve.ready", "starting with '/'"),
    ('[tool.mlfreeze.serve]\nready = "/h"', "tool.mlfreeze.serve", "never tells the app its port"),
    ('[tool.mlfreeze.serve]\nready = "/h"\nargs = ["--port", "{prot}"]', "tool.mlfreeze.serve.args",
     "placeholder {prot}"),
    ('[tool.mlfreeze.serve]\nready = "/h"\nport_env = "PORT"\nredy_timeout = 3', "tool.mlfreeze.serve.redy_timeout",
     "did you mean 'ready_timeout'"),
    ('[tool.mlfreeze.serve]\nready = "/h"\nport_env = "PORT"\nready_timeout = 0', "tool.mlfreeze.serve.ready_timeout",
     "more than 0"),
    ('[tool.mlfreeze.serve]\nready = "/h"\nport_env = "1PORT"', "tool.mlfreeze.serve.port_env", "variable name"),
    ('[tool.mlfreeze.serve]\nready = "/h"\nport_env = "P"\n[[tool.mlfreeze.serve.probes]]\ninput = "audio"\n'
     'path = "/a"\nvector = "/v"', "tool.mlfreeze.serve.probes[0].input", "allowed: text, image, face"),
    ('[tool.mlfreeze.serve]\nready = "/h"\nport_env = "P"\n[[tool.mlfreeze.serve.probes]]\ninput = "text"\n'
     'path = "/embed"\nvector = "/v"\njson = { text = "hello" }', "tool.mlfreeze.serve.probes[0]",
     "never sends its text input"),
    ('[tool.mlfreeze.serve]\nready = "/h"\nport_env = "P"\n[[tool.mlfreeze.serve.probes]]\ninput = "text"\n'
     'path = "/embed"\nvector = "/v"\njson = { text = "{image_path}" }', "tool.mlfreeze.serve.probes[0].json",
     "placeholder {image_path}"),
    ('[tool.mlfreeze.serve]\nready = "/h"\nport_env = "P"\n[[tool.mlfreeze.serve.probes]]\ninput = "image"\n'
     'path = "/embed"\nvector = "/v"\nupload = "file"\njson = {}', "tool.mlfreeze.serve.probes[0]",
     "both json and upload"),
    ('[tool.mlfreeze.serve]\nready = "/h"\nport_env = "P"\n[[tool.mlfreeze.serve.probes]]\ninput = "image"\n'
     'method = "GET"\npath = "/embed"\nvector = "/v"\nupload = "file"', "tool.mlfreeze.serve.probes[0]",
     "GET with a body"),
    ('[tool.mlfreeze.serve]\nready = "/h"\nport_env = "P"\n[[tool.mlfreeze.serve.probes]]\ninput = "image"\n'
     'path = "/embed"\nupload = "file"', "tool.mlfreeze.serve.probes[0].vector", "is missing"),
    ('smoke = "--version"', "tool.mlfreeze.smoke", "must be a table or a list"),
    ('smoke = { args = ["--version"], exit_code = 300 }', "tool.mlfreeze.smoke.exit_code", "0 to 255"),
    ('smoke = { args = [1] }', "tool.mlfreeze.smoke.args", "list of strings"),
])
def test_a_bad_contract_is_one_line_naming_file_and_key(tmp_path: Path, extra: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_project(tmp_path, extra))
    message = str(info.value)
    assert "pyproject.toml" in message and f"key '{key}" in message and words in message, message
    assert info.value.exit_code == 2 and "\n" not in message


def test_the_liveness_path_is_optional_and_checked(tmp_path: Path) -> None:
    serve = load_config(_project(tmp_path, SERVE.replace('ready = "/healthz"', 'ready = "/readyz"\nlive = "/livez"'))
                        ).contract.serve
    assert serve is not None and (serve.ready, serve.live) == ("/readyz", "/livez")
    (tmp_path / "pyproject.toml").unlink()
    with pytest.raises(ConfigError, match="tool.mlfreeze.serve.live' must be a URL path"):
        load_config(_project(tmp_path, SERVE.replace('ready = "/healthz"', 'ready = "/readyz"\nlive = "livez"')))


def test_smoke_is_a_list_of_arguments_or_a_table(tmp_path: Path) -> None:
    smoke = load_config(_project(tmp_path, 'smoke = ["--version"]')).contract.smoke
    assert smoke is not None and (smoke.args, smoke.exit_code) == (("--version",), 0)
    (tmp_path / "pyproject.toml").unlink()
    table = 'smoke = { args = ["bad"], exit_code = 2, env = { X = "1" } }'
    smoke = load_config(_project(tmp_path, table)).contract.smoke
    assert smoke is not None and (smoke.args, smoke.exit_code, dict(smoke.env)) == (("bad",), 2, {"X": "1"})


def test_the_contract_round_trips_through_the_bundles_file(tmp_path: Path) -> None:
    contract = load_config(_project(tmp_path, SERVE + '\n[tool.mlfreeze.smoke]\nargs = ["--help"]')).contract
    folder = tmp_path / "bundle"
    folder.mkdir()
    assert write_contract(folder, contract) == folder / CONTRACT_FILE
    assert read_contract(folder) == contract
    # the readiness URL and the port variable are explicit data in the file (an image's /readyz reads them)
    doc = json.loads((folder / CONTRACT_FILE).read_text())
    assert doc["serve"]["ready"] == "/healthz" and doc["serve"]["port_env"] == "PORT" and doc["serve"]["live"] is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_contract(empty, AppContract()) is None and read_contract(empty) == AppContract()
    (empty / CONTRACT_FILE).write_text('{"serve": {"ready": "/x"}}')
    with pytest.raises(ContractError, match="never tells the app its port"):
        read_contract(empty)
    (empty / CONTRACT_FILE).write_text("{not json")
    with pytest.raises(ContractError, match="not readable JSON"):
        read_contract(empty)


def test_fill_replaces_known_placeholders_in_nested_values() -> None:
    body = {"q": "{text}", "opts": ["{text}!", {"n": 3, "keep": "{other}"}]}
    assert fill(body, {"text": "a red circle"}) == {"q": "a red circle", "opts": ["a red circle!",
                                                                               {"n": 3, "keep": "{other}"}]}
    assert fill("--port={port}", {"port": "8123"}) == "--port=8123"


@pytest.mark.parametrize(("where", "want"), [
    ("/embedding", [1, 2]),
    ("embedding", [1, 2]),
    ("/data/1/vec", [3.5]),
    ("data.1.vec", [3.5]),
    ("/a~1b/c~0d", "x"),
])
def test_locate_reads_json_pointers_and_dotted_paths(where: str, want: object) -> None:
    doc = {"embedding": [1, 2], "data": [{"vec": [0]}, {"vec": [3.5]}], "a/b": {"c~d": "x"}}
    assert locate(doc, where) == want


@pytest.mark.parametrize(("where", "words"), [
    ("/faces/0/embedding", "no '/faces/0' in the answer (a list of 0)"),
    ("/missing", "no '/missing'"),
    ("data.x", "no 'data.x'"),
    ("/embedding/0/deeper", "int above it"),
])
def test_locate_names_the_first_step_that_fails(where: str, words: str) -> None:
    with pytest.raises(LookupError, match=words.replace("(", r"\(").replace(")", r"\)")):
        locate({"faces": [], "embedding": [1], "data": [1]}, where)


def test_parse_contract_refuses_unknown_top_level_keys() -> None:
    with pytest.raises(ContractError) as info:
        parse_contract({"serve": None, "smoke": None, "other": 1})
    assert info.value.key == "contract.other" and "serve" in info.value.known
