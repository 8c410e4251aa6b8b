"""`mlfreeze image` end to end on the example server app: the slim bundle of examples/search_server
(a FastAPI app that mounts mlfreeze_runtime.readiness), built by .ci/run and passed here with
``--server-bundle``, becomes an OCI image whose command, port variable and probe paths come from its
own ``[tool.mlfreeze.serve]``. podman runs it read-only, without capabilities, as a non-root user on
127.0.0.1: /livez answers at once; /readyz is 503 until every model file matched its sha256 and the
bundle's self-test passed, then 200 with the model ids from models.json; a model volume with one
byte flipped keeps it at 503 naming the file while /livez stays 200 and the container keeps
running. The image is at most the bundle + 20 MB and its digest is the same when built twice.

    .ci/run (after building the example):
    pytest tests/integration/test_image_podman.py --server-bundle examples/search_server/dist/<app>-<v>-<platform>-slim

Without ``--server-bundle`` these tests are deselected (the README's `nox -s tests` runs before any
bundle exists); given one, nothing is skipped: a missing bundle, podman, runc, skopeo or mmdebstrap
fails. podman runs with runc and lowered ulimits through CONTAINERS_CONF (a sandbox without
CAP_SYS_RESOURCE). One image build (plus the digest rebuild, from the cached base) serves every test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlfreeze.release import image, imagebase
from mlfreeze_runtime.contract import read_contract

pytestmark = pytest.mark.server_image

EPOCH = "1767225600"
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""
UID = 65532
TOOLS = ("podman", "runc", "skopeo", "mmdebstrap")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _podman(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}: {done.stderr[-2000:]}")
    return done


def _get(port: int, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _until(port: int, path: str, done, timeout: float = 300.0) -> tuple[int, dict]:
    end = time.monotonic() + timeout
    last: tuple[int, dict] | str = "no answer"
    while time.monotonic() < end:
        try:
            last = _get(port, path)
            if done(*last):
                return last
        except (OSError, ValueError) as exc:  # not bound yet, connection reset while podman sets up
            last = repr(exc)
        time.sleep(0.2)
    raise AssertionError(f"{path} never reached the expected answer in {timeout:.0f} s; last: {last}")


@pytest.fixture(scope="module")
def bundle(request: pytest.FixtureRequest) -> Path:
    given = request.config.getoption("--server-bundle")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    assert not missing, f"{', '.join(missing)} not installed (apt-get install podman runc skopeo mmdebstrap)"
    path = Path(given)
    assert (path / "BUILD-INFO.json").is_file(), f"--server-bundle {given}: not a bundle folder (no BUILD-INFO.json)"
    return path.resolve()


@pytest.fixture(scope="module")
def built(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("image")
    # a bundle built on this machine needs its glibc (libpython, libstdc++), newer than the profile's
    # floor: the audit before the image allows it as a local build, as .ci/run's own audits do
    # (tests/integration/test_users_machines_frozen.py tests the floor)
    floor = pytest.MonkeyPatch()
    floor.setenv("MLFREEZE_GLIBC_FLOOR", "host")
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
    conf = root / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    penv = {**env, "CONTAINERS_CONF": str(conf)}
    cache = Path(os.environ.get("MLFREEZE_CACHE") or root / "cache")
    first = image.build_image(image.plan_image(bundle, env=env, cache_dir=cache, out_root=root / "first"))
    again = image.build_image(image.plan_image(bundle, env=env, cache_dir=cache, out_root=root / "again"))
    os.environ["CONTAINERS_CONF"] = str(conf)  # skopeo/podman in load_image
    try:
        ref = image.load_image(first, name=f"localhost/mlfreeze-image-test:{first.plan.tag}")
    finally:
        os.environ.pop("CONTAINERS_CONF", None)
    models = json.loads((bundle / "models" / "models.json").read_text())
    try:
        yield {"bundle": bundle, "first": first, "again": again, "ref": ref, "env": penv, "root": root,
               "ids": [m["id"] for m in models["models"]], "models": models}
    finally:
        _podman("rmi", "-f", ref, env=penv, check=False)
        shutil.rmtree(root, ignore_errors=True)
        floor.undo()


@contextlib.contextmanager
def _container(built: dict, *extra: str) -> Iterator[tuple[str, int]]:
    """A detached container of the image serving on a free 127.0.0.1 port; its logs join any failure."""
    port = _free_port()
    container_port = built["first"].plan.serve.port
    cid = _podman("run", "-d", "--read-only", "--tmpfs", "/tmp", "--cap-drop=ALL", "--user", f"{UID}",
                  "-p", f"127.0.0.1:{port}:{container_port}", *extra, built["ref"], env=built["env"]).stdout.strip()
    try:
        yield cid, port
    except AssertionError as exc:
        logs = _podman("logs", cid, env=built["env"], check=False)
        raise AssertionError(f"{exc}\ncontainer logs:\n{(logs.stdout + logs.stderr)[-4000:]}") from None
    finally:
        _podman("rm", "-f", cid, env=built["env"], check=False)


def test_the_image_serves_as_the_apps_contract_says(built: dict) -> None:
    serve = read_contract(built["bundle"]).serve
    assert serve is not None and serve.ready == "/readyz" and serve.live == "/livez"  # the example's contract
    config = json.loads(_podman("image", "inspect", built["ref"], env=built["env"]).stdout)[0]["Config"]
    app = built["first"].plan.app
    assert config["User"] == f"{UID}:{UID}" and config["Entrypoint"] == [f"/opt/{app}/{app}"]
    assert config["Cmd"] == [a.replace("{host}", "0.0.0.0") for a in serve.args]
    assert f"{serve.port_env}=8080" in config["Env"]
    labels = config["Labels"]
    assert (labels["io.mlfreeze.readiness"], labels["io.mlfreeze.liveness"]) == (serve.ready, serve.live)


def test_same_inputs_same_digest_and_the_size_budget(built: dict) -> None:
    first, again = built["first"], built["again"]
    assert first.digest.startswith("sha256:") and first.digest == again.digest
    assert (first.layout / "index.json").read_bytes() == (again.layout / "index.json").read_bytes()
    bundle_bytes = sum(p.stat().st_size for p in built["bundle"].rglob("*") if p.is_file() and not p.is_symlink())
    size = int(_podman("image", "inspect", "--format", "{{.Size}}", built["ref"], env=built["env"]).stdout)
    assert size <= bundle_bytes + 20_000_000, (size, bundle_bytes)
    record = json.loads((first.layout / "image.json").read_text())
    assert record["digest"] == first.digest and record["base"]["packages"].get("libc6")
    assert not {"bash", "dash", "coreutils", "busybox"} & set(record["base"]["packages"])  # no shell
    # from the system: glibc and zlib; the NVIDIA driver's own libraries (a CUDA bundle's onnxruntime
    # provider needs libcuda.so.1) come from the host at run time (CDI / nvidia-container-toolkit), so
    # no package brings them
    from_system = {lib for lib in record["base"]["host_libraries"] if not imagebase.DRIVER.fullmatch(lib)}
    assert from_system <= {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1",
                           "libz.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}, from_system
    assert "libc.so.6" in from_system and not any("nvidia" in p or "cuda" in p for p in record["base"]["packages"])


def test_ready_only_after_sha256_and_selftest_with_the_model_ids(built: dict) -> None:
    with _container(built) as (_cid, port):
        status, doc = _until(port, "/livez", lambda s, d: s == 200, timeout=120)
        assert doc == {"status": "alive"}
        early, early_doc = _get(port, "/readyz")
        assert early == 503 and early_doc["status"] == "checking", early_doc  # the self-test takes seconds
        status, doc = _until(port, "/readyz", lambda s, d: d.get("status") != "checking")
        assert (status, doc) == (200, {"status": "ready", "models": built["ids"]})
        status, emb = _get(port, "/embed/text", {"text": "a red circle"})  # the app itself, not only its probes
        assert status == 200 and emb["dim"] == len(emb["embedding"]) > 0, emb


def test_a_flipped_model_byte_on_a_volume_keeps_it_unready_naming_the_file(built: dict) -> None:
    volume = built["root"] / "models-volume"
    shutil.copytree(built["bundle"] / "models", volume, dirs_exist_ok=True)
    os.chmod(built["root"], 0o755)
    for p in [volume, *volume.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    with _container(built, "-v", f"{volume}:/models:ro", "-e", "MLFREEZE_MODELS_DIR=/models") as (cid, port):
        status, doc = _until(port, "/readyz", lambda s, d: d.get("status") != "checking")
        assert (status, doc) == (200, {"status": "ready", "models": built["ids"]})  # a good volume is ready
        rel = sorted(built["models"]["models"][0]["sha256"])[0]  # a file models.json pins
        target = volume / rel
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
        status, doc = _until(port, "/readyz", lambda s, d: d.get("status") == "failed")
        assert status == 503 and Path(rel).name in doc["reason"] and "sha256" in doc["reason"], doc
        assert doc["files"] == [rel]
        assert _get(port, "/livez") == (200, {"status": "alive"})
        time.sleep(1.5)
        assert _get(port, "/readyz")[0] == 503  # stays unready: no crash loop, no flip back
        state = json.loads(_podman("inspect", cid, env=built["env"]).stdout)[0]["State"]
        assert state["Running"] is True and state["Status"] == "running"  # no crash, no restart
