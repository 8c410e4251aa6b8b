"""The self-test's server probe end to end, unfrozen: a real server process (a small standard-library
HTTP app that embeds through mlfreeze_runtime) started from its contract on 127.0.0.1, asked the
demo set's probes over HTTP, compared with the self-test's own embeddings, stopped by SIGTERM."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
from demo_models import lay_out_demo_models

from mlfreeze_runtime.verify import selftest

SERVER = '''
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mlfreeze_runtime import clip, faces
from mlfreeze_runtime.app import data_dir
from mlfreeze_runtime.modelindex import find_models_dir, read_models_index

(data_dir("tiny-server") / "started").write_text("ok")  # the self-test gives it a data directory
index = read_models_index(find_models_dir()[0])
emb = clip.embedder_for(index.first("clip"))
fe = faces.load_entry(index.first("insightface"), providers=["CPUExecutionProvider"])
WRONG = os.environ.get("TINY_WRONG") == "1"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer({"ready": True})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/v1/text":
            text = req["input"][0] + (" and more" if WRONG else "")
            self.answer({"data": [{"embedding": emb.embed_texts([text])[0].tolist()}]})
        elif self.path == "/v1/image":
            self.answer({"data": [{"embedding": emb.embed_images([clip.read_rgb(req["path"])])[0].tolist()}]})
        else:
            found = sorted(fe.detect(faces.read_bgr(req["path"])), key=lambda f: -f.score)
            self.answer({"faces": [{"vector": f.embedding.tolist()} for f in found]})


host = sys.argv[sys.argv.index("--bind") + 1]
ThreadingHTTPServer((host, int(os.environ["TINY_PORT"])), Handler).serve_forever()
'''

CONTRACT = {"serve": {
    "args": ["--bind", "{host}"], "port_env": "TINY_PORT", "ready": "/ready", "ready_timeout": 300,
    "probes": [
        {"input": "text", "path": "/v1/text", "json": {"input": ["{text}"]}, "vector": "data.0.embedding"},
        {"input": "image", "path": "/v1/image", "json": {"path": "{image_path}"}, "vector": "/data/0/embedding"},
        {"input": "face", "path": "/v1/faces", "json": {"path": "{image_path}"}, "vector": "/faces/0/vector"},
    ]}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    (root / "server.py").write_text(SERVER)
    (root / "contract.json").write_text(json.dumps(CONTRACT))
    return {"root": root, "models": lay_out_demo_models(root / "models")}


def _run(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    app = shlex.join([sys.executable, str(setup["root"] / "server.py")])
    code = selftest.main(["--models-dir", str(setup["models"]), "--json", "--app", app,
                          "--contract", str(setup["root"] / "contract.json")])
    return code, {r["check"]: r for r in json.loads(capsys.readouterr().out)["results"] if r["model"].startswith("app")}


def test_the_server_is_started_probed_over_http_and_stopped(setup: dict[str, Path],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, results = _run(setup, capsys)
    assert code == 0, results
    assert {k: v["status"] for k, v in results.items()} == {
        "app_serve": "pass", "app_serve.probe1.text": "pass", "app_serve.probe2.image": "pass",
        "app_serve.probe3.face": "pass"}
    assert "min cosine 1.0000" in results["app_serve.probe1.text"]["got"]
    assert results["app_serve.probe3.face"]["got"].startswith("2 inputs")  # a face photo and a blank image
    assert "app_probe" not in results  # a server is not asked --mlfreeze-probe


def test_a_server_whose_embeddings_disagree_fails_naming_the_probe_and_input(
        setup: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINY_WRONG", "1")
    code, results = _run(setup, capsys)
    assert code == 1
    assert results["app_serve"]["status"] == "pass"  # it started, was ready and stopped
    bad = results["app_serve.probe1.text"]
    assert bad["status"] == "fail" and "cosine" in bad["got"] and "'a red circle'" in bad["got"], bad
    assert results["app_serve.probe2.image"]["status"] == "pass"
