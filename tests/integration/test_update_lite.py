"""The updater for real: tiny lite bundles frozen with PyInstaller at three versions, published
with signed TUF metadata into a directory served over loopback HTTP, installed, updated,
rolled back, refused when damaged, tampered, expired or rolled back, and killed at every step.

The updater runs as a subprocess (``python -m mlfreeze_runtime.update``), as ``<app>-update`` does.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from lite_projects import freeze_lite, host_profile, tiny_app

from mlfreeze.release import publish
from mlfreeze_runtime import buildinfo, record
from mlfreeze_runtime.update import install

pytest.importorskip("PyInstaller")
pytest.importorskip("tuf")

APP = '''\
import json, sys
try:
    import torch  # noqa: F401
    ml = True
except ImportError:
    ml = False
if "--health" in sys.argv:
    print(json.dumps({"app": "tiny", "version": "VERSION", "ml_available": ml}))
'''
STEPS = ("download", "staged", "audited", "accepted", "moved", "switched", "recorded")


def freeze_tiny(root: Path, version: str, update_root: Path | None = None) -> Path:
    """A lite bundle of the tiny app, with its in-bundle ``tiny-update`` and, when given, the
    public root of trust frozen in (as ``[tool.mlfreeze] update_root`` does)."""
    proj = root / f"proj-{version}"
    app = tiny_app(proj, APP.replace("VERSION", version), version=version, update_root=update_root)
    bundle, _ = freeze_lite(proj, app, profile=host_profile(cpu_only=True), dist_dir=root / "dist")
    shutil.rmtree(proj / "build", ignore_errors=True)
    return bundle


def broken_copy(bundle: Path, version: str, dest_dir: Path) -> Path:
    """A correctly recorded and signed release whose executable cannot start (acceptance fails)."""
    info = buildinfo.read(bundle)
    dest = dest_dir / bundle.name.replace(info["version"], version)
    shutil.copytree(bundle, dest, symlinks=True)
    (dest / "_internal" / "base_library.zip").write_bytes(b"not a zip")
    _, digest = record.write(dest)
    entries = record.read(dest)
    info.update(version=version, record={"sha256": digest, "files": len(entries),
                                         "bytes": sum(e.size for e in entries.values())})
    buildinfo.write(dest, info)
    return dest


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    """A loopback HTTP server over ``directory`` (shut it down after use) and its URL."""
    directory.mkdir(exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import time

    base = tmp_path_factory.mktemp("update")
    keys = base / "keys"
    publish.generate_keys(keys)
    signers = publish.load_signers(keys, env={})
    # the project's public root, made before its first release and frozen into every bundle
    trust_root = publish.init_root(base / "root-of-trust", signers, source_date_epoch=int(time.time()) - 3600)
    bundles = {v: freeze_tiny(base, v, update_root=trust_root) for v in ("0.0.1", "0.0.2")}
    bundles["0.0.3-broken"] = broken_copy(bundles["0.0.2"], "0.0.3", base / "dist")
    repo = base / "repo"
    server, url = serve(repo)
    yield {"base": base, "bundles": bundles, "keys": keys, "repo": repo, "signers": signers, "url": url,
           "trust_root": trust_root}
    server.shutdown()
    shutil.rmtree(base, ignore_errors=True)


def pub(world: dict, key: str, repo: Path | None = None) -> None:
    import time
    publish.publish([world["bundles"][key]], repo or world["repo"], world["signers"],
                    source_date_epoch=int(time.time()) - 3600)


def updater(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlfreeze_runtime.update", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def current(root: Path) -> str | None:
    return install.pointer.for_root(root).read()


def health(root: Path) -> dict:
    done = subprocess.run([str(root / "current" / "tiny"), "--health"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_complete(root: Path) -> None:
    name = current(root)
    assert name is not None
    install.audit(root / "versions" / name, record_sha256=None, full=True)


@pytest.fixture(scope="module")
def installed(world: dict) -> dict:
    """v1 published and installed, v2 published: the starting point of the update tests."""
    pub(world, "0.0.1")
    root = world["base"] / "root"
    trust = world["repo"] / "metadata" / "1.root.json"
    shutil.copyfile(trust, world["base"] / "trusted-root.json")
    done = updater("install", "--from", world["url"], "--root", str(root), "--trust", str(world["base"] /
                   "trusted-root.json"))
    assert done.returncode == 0, done.stderr
    v1 = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.copytree(world["repo"] / "metadata", world["base"] / "metadata-v1")
    pub(world, "0.0.2")
    return {"root": root, "v1": v1, "trust": world["base"] / "trusted-root.json"}


def test_install_then_update_ends_on_the_new_version(world: dict, installed: dict) -> None:
    root = installed["root"]
    assert installed["v1"]["current"] == "tiny-0.0.1-linux-cpu-lite" and installed["v1"]["fetched_files"] > 0
    done = updater("update", "--root", str(root))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["current"] == "tiny-0.0.2-linux-cpu-lite" and current(root) == out["current"]
    assert health(root)["version"] == "0.0.2"
    full = sum(r[2] for r in json.loads((world["repo"] / "index.json").read_text())["variants"][0]["files"])
    assert out["reused_files"] > out["fetched_files"] and out["downloaded_bytes"] < 0.2 * full, out
    v1, v2 = root / "versions" / "tiny-0.0.1-linux-cpu-lite", root / "versions" / out["current"]
    r1, r2 = record.read(v1), record.read(v2)
    same = [rel for rel, e in r2.items() if rel in r1 and r1[rel].sha256 == e.sha256]
    assert len(same) > 0.8 * len(r2)
    assert all((v1 / rel).stat().st_ino == (v2 / rel).stat().st_ino for rel in same), \
        "an unchanged file must be hard-linked, not stored twice"
    status = updater("status", "--root", str(root), "--explain")
    assert status.returncode == 0
    assert "tiny-0.0.2-linux-cpu-lite: chosen, CPU build for linux-x86_64" in status.stdout
    assert "machine: linux" in status.stdout


def test_rollback_restores_the_previous_version(installed: dict) -> None:
    root = installed["root"]
    assert current(root) == "tiny-0.0.2-linux-cpu-lite"
    done = updater("rollback", "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert current(root) == "tiny-0.0.1-linux-cpu-lite" and health(root)["version"] == "0.0.1"
    assert updater("rollback", "--root", str(root)).returncode == 2  # nothing older
    assert updater("update", "--root", str(root)).returncode == 0
    assert current(root) == "tiny-0.0.2-linux-cpu-lite"


def copy_root(installed: dict, tmp_path: Path) -> Path:
    """A copy of the shared install (v2 current), so a test's repository does not raise the
    metadata versions the shared install has seen (TUF would rightly call the next one a rollback)."""
    root = tmp_path / "root"
    shutil.copytree(installed["root"], root, symlinks=True)
    assert current(root) == "tiny-0.0.2-linux-cpu-lite"
    return root


def test_a_corrupted_blob_is_refused_and_the_previous_version_kept(world: dict, installed: dict,
                                                                   tmp_path: Path) -> None:
    root = copy_root(installed, tmp_path)
    repo = world["base"] / "repo-corrupt"
    shutil.copytree(world["repo"], repo)
    pub(world, "0.0.3-broken", repo)  # a good signature over the index...
    doc = json.loads((repo / "index.json").read_text())
    path, sha, size, _ = next(r for r in doc["variants"][0]["files"] if r[0] == "_internal/base_library.zip")
    blob = repo / "blobs" / sha[:2] / sha
    blob.write_bytes(b"x" * size)  # ...and a blob whose bytes are not the signed ones
    done = updater("update", "--root", str(root), "--from", str(repo))
    assert done.returncode == 3, done.stderr
    assert "damaged or tampered" in done.stderr and current(root) == "tiny-0.0.2-linux-cpu-lite"
    assert not list((root / ".staging").iterdir())


def test_a_release_failing_its_acceptance_check_is_refused(world: dict, installed: dict, tmp_path: Path) -> None:
    root = copy_root(installed, tmp_path)
    repo = world["base"] / "repo-broken"
    shutil.copytree(world["repo"], repo)
    pub(world, "0.0.3-broken", repo)
    done = updater("update", "--root", str(root), "--from", str(repo))
    assert done.returncode == 1, done.stderr
    assert "acceptance check failed" in done.stderr and current(root) == "tiny-0.0.2-linux-cpu-lite"
    assert "tiny-0.0.3-linux-cpu-lite" not in install.installed(root)
    assert health(root)["version"] == "0.0.2"


def test_tampered_expired_and_rolled_back_metadata_are_refused(world: dict, installed: dict,
                                                               tmp_path: Path) -> None:
    root = copy_root(installed, tmp_path)
    tampered = world["base"] / "repo-tampered"
    shutil.copytree(world["repo"], tampered)
    ts = tampered / "metadata" / "timestamp.json"
    ts.write_text(ts.read_text().replace('"version": ', '"version": 1', 1))
    done = updater("update", "--root", str(root), "--from", str(tampered))
    assert done.returncode == 3 and "refused" in done.stderr, done.stderr

    expired = world["base"] / "repo-expired"
    shutil.copytree(world["repo"], expired)
    publish.resign(expired, world["signers"], validity=publish.Validity(snapshot=1, timestamp=1),
                   now=__import__("time").time() - 3 * 86400 + 3600)  # valid one day, signed 3 days ago... almost
    done = updater("update", "--root", str(root), "--from", str(expired))
    assert done.returncode == 3 and "expired" in done.stderr, done.stderr

    stale = world["base"] / "repo-stale"
    shutil.copytree(world["repo"], stale)
    shutil.rmtree(stale / "metadata")
    shutil.copytree(world["base"] / "metadata-v1", stale / "metadata")  # what a frozen mirror would serve
    done = updater("update", "--root", str(root), "--from", str(stale))
    assert done.returncode == 3 and "refused" in done.stderr, done.stderr
    assert current(root) == "tiny-0.0.2-linux-cpu-lite"


def test_an_unsigned_remote_is_refused(world: dict, installed: dict, tmp_path: Path) -> None:
    done = updater("install", "--from", world["url"] + "blobs/", "--root", str(tmp_path / "r"))
    assert done.returncode == 3 and "must be signed" in done.stderr


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_any_step_leaves_a_complete_current(world: dict, installed: dict, step: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(installed["root"], root, symlinks=True)
    assert updater("rollback", "--root", str(root)).returncode == 0  # current: v1, v2 is to be installed
    shutil.rmtree(root / "versions" / "tiny-0.0.2-linux-cpu-lite")
    done = updater("update", "--root", str(root), env={install.KILL_ENV: step})
    assert done.returncode == -signal.SIGKILL, (step, done.stdout, done.stderr)
    assert_complete(root)
    expected = "tiny-0.0.1-linux-cpu-lite" if STEPS.index(step) < STEPS.index("switched") else \
        "tiny-0.0.2-linux-cpu-lite"
    assert current(root) == expected
    health(root)
    again = updater("update", "--root", str(root))
    assert again.returncode == 0, again.stderr
    assert current(root) == "tiny-0.0.2-linux-cpu-lite" and not list((root / ".staging").iterdir())
    assert not list(root.glob(".current.*")) and not (root / ".downloads").exists()


def in_bundle(exe: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a bundle's own ``tiny-update`` (frozen, its own Analysis) from a clean environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFREEZE_"))}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, env=env)


def test_the_in_bundle_updater_installs_updates_explains_and_rolls_back(world: dict, tmp_path: Path) -> None:
    v1, v2 = world["bundles"]["0.0.1"], world["bundles"]["0.0.2"]
    for b in (v1, v2):
        info = buildinfo.read(b)
        assert info["update_root"] == record.hash_file(b / "update-root.json")[0]
        assert info["cuda_archs"] == [] and "tiny-update" in record.read(b)
        assert (b / "update-root.json").read_bytes() == world["trust_root"].read_bytes()
    repo = tmp_path / "repo"
    shutil.copytree(world["trust_root"].parent, repo / "metadata")  # the repository the root was made for
    server, url = serve(repo)
    try:
        pub(world, "0.0.1", repo)
        root = tmp_path / "install"
        done = in_bundle(v1 / "tiny-update", "install", "--from", url, "--root", str(root))  # no --trust: frozen in
        assert done.returncode == 0, done.stderr
        assert "signed metadata verified (TUF)" in done.stdout and current(root) == "tiny-0.0.1-linux-cpu-lite"
        pub(world, "0.0.2", repo)
        updater_exe = root / "current" / "tiny-update"  # the installed one finds its root from its own place
        done = in_bundle(updater_exe, "update")
        assert done.returncode == 0, done.stderr
        assert current(root) == "tiny-0.0.2-linux-cpu-lite" and health(root)["version"] == "0.0.2"
        status = in_bundle(root / "current" / "tiny-update", "status", "--explain")
        assert status.returncode == 0, status.stderr
        assert "current: tiny-0.0.2-linux-cpu-lite" in status.stdout
        assert "tiny-0.0.2-linux-cpu-lite: chosen, CPU build for linux-x86_64" in status.stdout
        assert "machine: linux" in status.stdout
        done = in_bundle(root / "current" / "tiny-update", "rollback")
        assert done.returncode == 0, done.stderr
        assert current(root) == "tiny-0.0.1-linux-cpu-lite" and health(root)["version"] == "0.0.1"
        seconds = float(done.stdout.split(" in ")[-1].split()[0])
        assert seconds < 2.0, done.stdout  # the bound on the switch back, as the updater measures it
    finally:
        server.shutdown()


def test_a_bundle_without_a_root_of_trust_refuses_remote_updates(world: dict, installed: dict,
                                                                  tmp_path: Path) -> None:
    bare = tmp_path / world["bundles"]["0.0.1"].name
    shutil.copytree(world["bundles"]["0.0.1"], bare, symlinks=True)
    (bare / "update-root.json").unlink()  # as a bundle built without [tool.mlfreeze] update_root
    done = in_bundle(bare / "tiny-update", "install", "--from", world["url"], "--root", str(tmp_path / "r"))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1 and "no root of trust" in done.stderr
    assert not (tmp_path / "r" / "current").exists()
