"""mlfreeze_runtime.serve against real HTTP servers on 127.0.0.1 (threads standing in for the app's
process): readiness, probes by JSON body, multipart upload and query string, vectors found by
their path, and a failure that names its step (start, readiness, probe N, stop)."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlfreeze_runtime.contract import parse_serve
from mlfreeze_runtime.serve import run

pytestmark = pytest.mark.loopback


class FakeServer:
    """A server 'process': an HTTP server thread on the port the contract gave it."""

    pid = -1  # no process group to clean up

    def __init__(self, port: int, behaviour: dict[str, Any], log: Any) -> None:
        self.behaviour = behaviour
        self.received: list[tuple[str, str, bytes, str]] = []
        self.code: int | None = None
        self.killed = False
        log.write(b"fake server starting\n")
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, doc: Any) -> None:
                body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                self._route("GET", b"")

            def do_POST(self) -> None:  # noqa: N802
                self._route("POST", self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _route(self, method: str, body: bytes) -> None:
                outer.received.append((method, self.path, body, self.headers.get("Content-Type", "")))
                path = urllib.parse.urlsplit(self.path).path
                if path == "/healthz":
                    self._answer(outer.behaviour.get("ready_status", 200), {"ok": True})
                    return
                answer = outer.behaviour.get(path)
                if callable(answer):
                    status, doc = answer(self.path, body)
                    self._answer(status, doc)
                else:
                    self._answer(404, {"detail": "not found"})

        if behaviour.get("crash"):
            self.code = 1
            log.write(b"ModuleNotFoundError: No module named 'numpy'\n")
            log.flush()
            self.httpd = None
            return
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def poll(self) -> int | None:
        return self.code

    def terminate(self) -> None:
        if not self.behaviour.get("stubborn") and self.httpd is not None:
            self.httpd.shutdown()
            self.code = -15

    def kill(self) -> None:
        self.killed = True
        if self.httpd is not None:
            self.httpd.shutdown()
        self.code = -9

    def wait(self, timeout: float | None = None) -> int:
        if self.code is None:
            raise subprocess.TimeoutExpired("fake", timeout or 0)
        return self.code


def _spawn(behaviour: dict[str, Any], made: list[FakeServer]) -> Any:
    def spawn(cmd: list[str], *, env: dict[str, str], cwd: Path, stdout: Any) -> FakeServer:
        behaviour["cmd"], behaviour["env"] = cmd, env
        server = FakeServer(int(env["PORT"]), behaviour, stdout)
        made.append(server)
        return server
    return spawn


def _contract(**extra: Any) -> Any:
    doc = {"args": ["--host", "{host}"], "port_env": "PORT", "ready": "/healthz", "ready_timeout": 2,
           "stop_timeout": 0.5,
           "probes": [{"input": "text", "path": "/embed/text", "json": {"text": "{text}"}, "vector": "/embedding"},
                      {"input": "image", "path": "/embed/image", "upload": "file", "vector": "data.0.embedding"},
                      {"input": "face", "method": "GET", "path": "/faces", "query": {"path": "{image_path}"},
                       "vector": "/faces/0/embedding"}]}
    doc.update(extra)
    return parse_serve(doc)


def _embedder(path: str, body: bytes) -> tuple[int, Any]:
    text = json.loads(body)["text"]
    return 200, {"embedding": [float(len(text)), 1.0]}


def _image(path: str, body: bytes) -> tuple[int, Any]:
    return 200, {"data": [{"embedding": [1.0 if b"face bytes" in body else 0.0, 2.0]}]}


def _faces(path: str, body: bytes) -> tuple[int, Any]:
    image = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["path"][0]
    return 200, {"faces": [] if "blank" in image else [{"embedding": [0.0, 3.0]}]}


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, data in (("face.png", b"\x89PNG face bytes"), ("blank.png", b"\x89PNG blank")):
        out[name] = tmp_path / name
        out[name].write_bytes(data)
    return out


def test_a_server_that_works_answers_every_probe(tmp_path: Path, images: dict[str, Path]) -> None:
    made: list[FakeServer] = []
    behaviour: dict[str, Any] = {"/embed/text": _embedder, "/embed/image": _image, "/faces": _faces}
    out = run(["app"], _contract(), env={"KEEP": "1"}, workdir=tmp_path, spawn=_spawn(behaviour, made),
              inputs={"text": ["a red circle", "dog"], "image": [images["face.png"]],
                      "face": [images["face.png"], images["blank.png"]]})
    assert out.passed, out.failures
    assert out.vectors == {1: [[12.0, 1.0], [3.0, 1.0]], 2: [[1.0, 2.0]],
                           3: [[0.0, 3.0], None]}
    # the port reached the app through its variable, the host through {host}; the caller's env is kept
    assert behaviour["cmd"] == ["app", "--host", "127.0.0.1"]
    assert behaviour["env"]["PORT"] == str(out.port) and behaviour["env"]["KEEP"] == "1"
    # the upload is a multipart form whose "file" part holds the image's bytes
    method, _, body, kind = next(r for r in made[0].received if r[1] == "/embed/image")
    assert method == "POST" and kind.startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="face.png"' in body and b"\x89PNG face bytes" in body
    assert not made[0].killed and out.ready_s is not None


@pytest.mark.parametrize(("behaviour", "step", "words"), [
    ({"crash": True}, "start", "exited with code 1 before it was ready; its output ends: fake server starting | "
                               "ModuleNotFoundError: No module named 'numpy'"),
    ({"ready_status": 503}, "readiness", "GET /healthz answered no 2xx within 2 s (last: HTTP 503)"),
    ({"/embed/text": lambda p, b: (500, b"Internal Server Error"), "/embed/image": _image, "/faces": _faces},
     "probe 1", "POST /embed/text for 'a red circle': HTTP 500: Internal Server Error"),
    ({"/embed/text": _embedder, "/embed/image": lambda p, b: (200, {"data": []}), "/faces": _faces},
     "probe 2", "POST /embed/image for face.png: no 'data.0' in the answer (a list of 0)"),
    ({"/embed/text": lambda p, b: (200, b"<html>"), "/embed/image": _image, "/faces": _faces},
     "probe 1", "the answer is not JSON"),
    ({"/embed/text": lambda p, b: (200, {"embedding": ["x"]}), "/embed/image": _image, "/faces": _faces},
     "probe 1", "is not a list of numbers"),
    ({"/embed/text": _embedder, "/embed/image": _image, "/faces": _faces, "stubborn": True},
     "stop", "did not exit within 0.5 s of SIGTERM and was killed"),
])
def test_a_failure_names_its_step(tmp_path: Path, images: dict[str, Path], behaviour: dict[str, Any], step: str,
                                  words: str) -> None:
    made: list[FakeServer] = []
    out = run(["app"], _contract(), env={}, workdir=tmp_path, spawn=_spawn(behaviour, made),
              inputs={"text": ["a red circle"], "image": [images["face.png"]], "face": [images["blank.png"]]})
    assert [f.step for f in out.failures] == [step], out.failures
    assert words in out.failures[0].detail, out.failures[0].detail
    assert made[0].poll() is not None  # whatever failed, nothing is left running


def test_a_server_that_cannot_be_started_is_a_start_failure(tmp_path: Path) -> None:
    def spawn(cmd: list[str], **kw: Any) -> Any:
        raise FileNotFoundError(2, "No such file or directory")

    out = run(["/nowhere/app"], _contract(), env={}, workdir=tmp_path, spawn=spawn)
    assert [(f.step, f.detail) for f in out.failures] == [("start", "cannot start /nowhere/app: "
                                                                    "No such file or directory")]


def test_without_inputs_only_start_readiness_and_stop_run(tmp_path: Path) -> None:
    made: list[FakeServer] = []
    out = run(["app"], _contract(), env={}, workdir=tmp_path, spawn=_spawn({}, made))
    assert out.passed and out.vectors == {}
    assert [r[1] for r in made[0].received][-1] == "/healthz"  # nothing but readiness was asked
