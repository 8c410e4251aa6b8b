"""`mlfreeze image` end to end: the slim bundle of a tiny stdlib HTTP server (tests/serve_app),
frozen and verified for real, becomes an OCI image that podman runs read-only, without
capabilities, as a non-root user on 127.0.0.1. /livez answers at once; /readyz is 503 until the
models' sha256 and the bundle's self-test passed, then 200 with the model ids; a model volume with
one byte flipped keeps it at 503 naming the file while /livez stays 200. The image is at most the
bundle + 20 MB and its digest is the same when built twice.

Needs podman, runc, skopeo and mmdebstrap (.ci/run installs them with apt); podman runs with
runc and lowered ulimits through CONTAINERS_CONF (a sandbox without CAP_SYS_RESOURCE).
One image build (plus the digest rebuild, from the cached base), reused by every test here.
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

pytest.importorskip("onnxruntime")
pytest.importorskip("elftools")
for _tool in ("podman", "skopeo", "runc"):
    if shutil.which(_tool) is None:
        pytest.skip(f"{_tool} is not installed (apt-get install podman runc skopeo mmdebstrap)",
                    allow_module_level=True)

from serve_projects import freeze_serve_slim  # noqa: E402

from mlfreeze.release import image  # noqa: E402

EPOCH = "1767225600"
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""
UID = 65532


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


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _until(port: int, path: str, done, timeout: float = 180.0) -> tuple[int, dict]:
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
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("image")
    # a bundle frozen here needs this machine's glibc (its libpython and libstdc++), newer than the
    # profile's floor: allowed as a local build (tests/integration/test_users_machines_frozen.py tests the floor)
    floor = pytest.MonkeyPatch()
    floor.setenv("MLFREEZE_GLIBC_FLOOR", "host")
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
    conf = root / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    penv = {**env, "CONTAINERS_CONF": str(conf)}
    cache = Path(os.environ.get("MLFREEZE_CACHE") or root / "cache")
    bundle = freeze_serve_slim(root, cache)
    serve = image.ServeSpec(command=("serve",))
    plan = image.plan_image(bundle, serve=serve, env=env, cache_dir=cache)
    first = image.build_image(plan)
    again = image.build_image(image.plan_image(bundle, serve=serve, env=env, cache_dir=cache,
                                               out_root=root / "again"))
    os.environ["CONTAINERS_CONF"] = str(conf)  # skopeo/podman in load_image
    try:
        ref = image.load_image(first, name=f"localhost/embedserve-test:{first.plan.tag}")
    finally:
        os.environ.pop("CONTAINERS_CONF", None)
    yield {"bundle": bundle, "first": first, "again": again, "ref": ref, "env": penv, "root": root}
    _podman("rmi", "-f", ref, env=penv, check=False)
    shutil.rmtree(root, ignore_errors=True)
    floor.undo()


@contextlib.contextmanager
def _container(built: dict, *extra: str) -> Iterator[tuple[str, int]]:
    """A detached container of the image serving on a free 127.0.0.1 port; its logs join any failure."""
    cid, port = _run(built, *extra)
    try:
        yield cid, port
    except AssertionError as exc:
        logs = _podman("logs", cid, env=built["env"], check=False)
        raise AssertionError(f"{exc}\ncontainer logs:\n{(logs.stdout + logs.stderr)[-4000:]}") from None
    finally:
        _podman("rm", "-f", cid, env=built["env"], check=False)


def _run(built: dict, *extra: str) -> tuple[str, int]:
    port = _free_port()
    done = _podman("run", "-d", "--read-only", "--tmpfs", "/tmp", "--cap-drop=ALL", "--user", f"{UID}",
                   "-p", f"127.0.0.1:{port}:8080", *extra, built["ref"], "serve", env=built["env"])
    return done.stdout.strip(), port


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
    assert set(record["base"]["host_libraries"]) <= {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0",
                                                     "librt.so.1", "libutil.so.1", "libz.so.1",
                                                     "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}
    config = json.loads(_podman("image", "inspect", built["ref"], env=built["env"]).stdout)[0]["Config"]
    assert config["User"] == f"{UID}:{UID}" and config["Entrypoint"][0].endswith("/embedserve")


def test_ready_only_after_sha256_and_selftest(built: dict) -> None:
    with _container(built) as (_cid, port):
        status, doc = _until(port, "/livez", lambda s, d: s == 200, timeout=60)
        assert doc == {"status": "alive"}
        early, early_doc = _get(port, "/readyz")
        assert early == 503 and early_doc["status"] == "checking", early_doc  # the self-test takes seconds
        status, doc = _until(port, "/readyz", lambda s, d: d.get("status") != "checking")
        assert (status, doc) == (200, {"status": "ready", "models": ["demo-clip"]})
        status, emb = _get(port, "/embed?text=a%20red%20circle")
        assert status == 200 and len(emb["embedding"]) == 64


def test_a_flipped_model_byte_on_a_volume_keeps_it_unready_naming_the_file(built: dict) -> None:
    volume = built["root"] / "models-volume"
    shutil.copytree(built["bundle"] / "models", volume, dirs_exist_ok=True)
    os.chmod(built["root"], 0o755)
    for p in [volume, *volume.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    with _container(built, "-v", f"{volume}:/models:ro", "-e", "MLFREEZE_MODELS_DIR=/models") as (cid, port):
        status, doc = _until(port, "/readyz", lambda s, d: d.get("status") != "checking")
        assert status == 200 and doc["models"] == ["demo-clip"], doc  # a good volume is ready
        target = volume / "demo-clip" / "demo_clip_text.onnx"
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
        status, doc = _until(port, "/readyz", lambda s, d: d.get("status") == "failed")
        assert status == 503 and "demo_clip_text.onnx" in doc["reason"] and "sha256" in doc["reason"], doc
        assert doc["files"] == ["demo-clip/demo_clip_text.onnx"]
        assert _get(port, "/livez") == (200, {"status": "alive"})
        time.sleep(1.5)
        assert _get(port, "/readyz")[0] == 503  # stays unready: no crash loop, no flip back
        state = json.loads(_podman("inspect", cid, env=built["env"]).stdout)[0]["State"]
        assert state["Running"] is True and state["Status"] == "running"  # no crash, no restart
