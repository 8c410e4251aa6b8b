"""mlfreeze_runtime.readiness: /livez at once; /readyz 503 with the reason until every model file matches
its sha256 and the self-test passed, then 200 with the model ids; a damaged file keeps it 503 naming
the file; a file changed after it was verified sends it back to checking."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mlfreeze_runtime import readiness as serve
from mlfreeze_runtime.modelindex import write_models_index


def _models(root: Path, *, record_sha: bool = True) -> Path:
    (root / "m1").mkdir(parents=True)
    (root / "m1" / "w.onnx").write_bytes(b"weights-one" * 50)
    (root / "m1" / "t.onnx").write_bytes(b"text-tower" * 50)
    files = {"w.onnx": "m1/w.onnx", "t.onnx": "m1/t.onnx"}
    sha = {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in files.values()} if record_sha else {}
    write_models_index(root, [{"id": "m1", "kind": "insightface", "arch": "", "embed_dim": 8, "files": files,
                               "sha256": sha}], set_name="t")
    return root


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[3] ^= 0x40
    path.write_bytes(bytes(data))


def test_ready_after_sha256_and_selftest_with_the_model_ids(tmp_path: Path) -> None:
    calls: list[int] = []
    r = serve.Readiness(_models(tmp_path), selftest=lambda: calls.append(1) or None, log=lambda _: None)
    code, doc = r.readyz()
    assert code == 503 and doc["status"] == "checking" and doc["reason"]
    assert r.livez() == (200, {"status": "alive"})
    assert r.check() == "ready" and calls == [1]
    assert r.readyz() == (200, {"status": "ready", "models": ["m1"]})


def test_a_flipped_byte_is_503_naming_the_file_and_the_selftest_does_not_run(tmp_path: Path) -> None:
    models = _models(tmp_path)
    _flip(models / "m1" / "t.onnx")
    calls: list[int] = []
    r = serve.Readiness(models, selftest=lambda: calls.append(1) or None, log=lambda _: None)
    assert r.check() == "failed" and calls == []
    code, doc = r.readyz()
    assert code == 503 and doc["status"] == "failed" and doc["files"] == ["m1/t.onnx"]
    assert str(models / "m1" / "t.onnx") in doc["reason"] and "sha256" in doc["reason"]
    assert r.livez()[0] == 200


def test_a_failing_selftest_a_missing_file_no_sha256_and_no_folder_are_each_503(tmp_path: Path) -> None:
    r = serve.Readiness(_models(tmp_path / "a"), selftest=lambda: "self-test failed: m1: norm: FAIL",
                        log=lambda _: None)
    assert r.check() == "failed" and r.readyz()[1]["reason"] == "self-test failed: m1: norm: FAIL"
    gone = _models(tmp_path / "b")
    (gone / "m1" / "w.onnx").unlink()
    r = serve.Readiness(gone, selftest=None, log=lambda _: None)
    assert r.check() == "failed" and "w.onnx" in r.readyz()[1]["reason"]
    r = serve.Readiness(_models(tmp_path / "c", record_sha=False), selftest=None, log=lambda _: None)
    assert r.check() == "failed" and "records no sha256" in r.readyz()[1]["reason"]
    r = serve.Readiness(tmp_path / "nowhere", selftest=None, log=lambda _: None)
    assert r.check() == "failed" and "does not exist" in r.readyz()[1]["reason"]


def test_a_file_changed_after_verification_is_checked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = _models(tmp_path)
    monkeypatch.setattr(serve, "RESTAT_SECONDS", 0.0)
    r = serve.Readiness(models, selftest=None, log=lambda _: None)
    assert r.check() == "ready"
    target = models / "m1" / "w.onnx"
    _flip(target)
    os.utime(target, ns=(1, 1))  # whatever the clock's resolution, the mtime differs
    code, doc = r.readyz()
    assert code == 503 and doc["status"] == "checking" and str(target) in doc["reason"]
    assert r.wait(30) == "failed"
    assert r.readyz()[1]["files"] == ["m1/w.onnx"]


def test_listen_address_from_the_environment() -> None:
    assert serve.listen_address({}) == ("127.0.0.1", 8080)
    assert serve.listen_address({"PORT": "9000", "HOST": "0.0.0.0"}) == ("0.0.0.0", 9000)
    assert serve.listen_address({"APP_PORT": "7000"}, port_env="APP_PORT") == ("127.0.0.1", 7000)
    for bad in ("0", "65536", "http", "-1"):
        with pytest.raises(serve.ServeConfigError, match=f"PORT='{bad}' is not a TCP port"):
            serve.listen_address({"PORT": bad})


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.loopback
def test_the_wsgi_middleware_answers_the_probes_and_passes_the_rest(tmp_path: Path) -> None:
    gate = threading.Event()

    def selftest() -> None:
        gate.wait(30)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app:" + environ["PATH_INFO"].encode()]

    r = serve.Readiness(_models(tmp_path), selftest=selftest, log=lambda _: None)
    server = serve.make_server(serve.probes_middleware(app, r), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        r.start()
        assert _get(base + "/livez") == (200, {"status": "alive"})
        code, doc = _get(base + "/readyz")
        assert code == 503 and doc["status"] == "checking"
        gate.set()
        assert r.wait(30) == "ready"
        assert _get(base + "/readyz?verbose=1") == (200, {"status": "ready", "models": ["m1"]})
        with urllib.request.urlopen(base + "/search", timeout=5) as resp:
            assert resp.read() == b"app:/search"
    finally:
        gate.set()
        server.shutdown()
        server.server_close()


@pytest.mark.loopback
def test_the_standalone_probe_server_for_apps_that_do_not_mount_it(tmp_path: Path) -> None:
    models = _models(tmp_path)
    _flip(models / "m1" / "w.onnx")
    r = serve.Readiness(models, selftest=None, log=lambda _: None)
    server = serve.serve_probes(r, "127.0.0.1", 0, readyz="/ready")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        r.start().wait(30)
        code, doc = _get(base + "/ready")
        assert code == 503 and doc["files"] == ["m1/w.onnx"]
        assert _get(base + "/livez")[0] == 200
        assert _get(base + "/readyz")[0] == 404  # the path is the app's choice
    finally:
        server.shutdown()
        server.server_close()


def test_the_selftest_command_passes_only_on_exit_0_with_passed_true(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    answers: list[subprocess.CompletedProcess[str]] = []
    seen: list[dict] = []

    def fake_run(cmd, **kw):
        seen.append(kw["env"])
        return answers.pop(0)

    monkeypatch.setattr(serve.subprocess, "run", fake_run)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/b/_internal")
    monkeypatch.setenv("LD_LIBRARY_PATH_ORIG", "/usr/local/lib")
    check = serve.command_selftest(["/b/app-selftest", "--json"], timeout=5)
    fail = {"status": "fail", "model": "demo-clip", "check": "golden.image", "expected": "cos >= 0.999", "got": "0.31"}
    answers[:] = [subprocess.CompletedProcess([], 0, "noise\n" + json.dumps({"passed": True, "results": []}), ""),
                  subprocess.CompletedProcess([], 1, json.dumps({"passed": False, "results": [fail, fail]}), ""),
                  subprocess.CompletedProcess([], 2, "", "app-selftest: error: no models.json\n"),
                  subprocess.CompletedProcess([], 0, json.dumps({"passed": False, "results": []}), "")]
    assert check() is None
    assert seen[0]["LD_LIBRARY_PATH"] == "/usr/local/lib" and "LD_LIBRARY_PATH_ORIG" not in seen[0]
    assert check() == ("self-test failed: demo-clip: golden.image: expected cos >= 0.999, got 0.31 (+1 more)")
    assert check() == "self-test app-selftest failed (exit 2): app-selftest: error: no models.json"
    assert check() is not None  # exit 0 but passed: false is not a pass

    def timeout(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, 5)

    monkeypatch.setattr(serve.subprocess, "run", timeout)
    assert "did not finish in 5 s" in check()


def test_the_bundle_selftest_is_the_sibling_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    assert serve.bundle_selftest() is None  # a checkout: sha256 alone
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "app"))
    missing = serve.bundle_selftest()
    assert missing is not None and "app-selftest is missing" in (missing() or "")
    (tmp_path / "app-selftest").write_text("")
    assert serve.bundle_selftest() is not None
    monkeypatch.setenv("MLFREEZE_SELFTEST_TIMEOUT", "soon")
    with pytest.raises(serve.ServeConfigError, match="MLFREEZE_SELFTEST_TIMEOUT='soon'"):
        serve.bundle_selftest()
    # the server <app>-selftest itself started checks the sha256 alone: it must not start the self-test again
    monkeypatch.delenv("MLFREEZE_SELFTEST_TIMEOUT")
    monkeypatch.setenv("MLFREEZE_UNDER_SELFTEST", "1")
    assert serve.bundle_selftest() is None
    monkeypatch.setenv("MLFREEZE_UNDER_SELFTEST", "0")
    assert serve.bundle_selftest() is not None


def test_the_selftest_marks_the_app_it_starts(tmp_path: Path) -> None:
    from mlfreeze_runtime.modelindex import ModelIndex
    from mlfreeze_runtime.verify.selftest import app_environment

    index = ModelIndex(directory=tmp_path, set_name="demo", models=(), expected_providers=(), document={})
    env = app_environment(index, "cpu", tmp_path / "data")
    assert env["MLFREEZE_UNDER_SELFTEST"] == "1" and env["MLFREEZE_MODELS_DIR"] == str(tmp_path)
