"""Packs for real: tiny lite bundles frozen with PyInstaller at two versions, published with
``--packs`` and a small pack limit (several packs) and signed TUF metadata, served by the fetch
tests' Range-aware loopback server; the updater (a subprocess, as ``<app>-update``) installs and
updates through byte-range requests (adjacent files coalesced into one request). Also: a cut
transfer resumed at ``offset + have``, a server that ignores Range, a truncated or corrupted pack
(exit 3, nothing switched), a file over the pack limit at publish (exit 4)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fetch_servers import FaultServer, _Handler, redirect, serving
from test_update_lite import current, freeze_tiny, health, in_bundle, updater

from mlfreeze.errors import PackError
from mlfreeze.release import packs, publish
from mlfreeze_runtime import record
from mlfreeze_runtime.update import http, install
from mlfreeze_runtime.update.errors import FetchError

pytest.importorskip("PyInstaller")
pytest.importorskip("tuf")


def pub(world: dict, version: str) -> dict:
    publish.publish([world["bundles"][version]], world["repo"], world["signers"],
                    source_date_epoch=int(time.time()) - 3600, packs=True, pack_limit=world["limit"])
    world["server"].add_tree(world["repo"])
    return json.loads((world["repo"] / "index.json").read_text())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """v1 published with packs and installed; v2 published (an app-only update): the starting point."""
    base = tmp_path_factory.mktemp("packs")
    publish.generate_keys(base / "keys")
    bundles = {v: freeze_tiny(base, v) for v in ("0.0.1", "0.0.2")}
    sizes = [e.size for e in record.read(bundles["0.0.1"]).values()]
    limit = max(max(sizes), sum(sizes) // 4) + 1  # the biggest file fits; the bundle needs several packs
    with contextlib.contextmanager(serving)() as server:
        world = {"base": base, "bundles": bundles, "repo": base / "repo", "server": server, "limit": limit,
                 "signers": publish.load_signers(base / "keys", env={}), "url": server.url("/")}
        world["v1"] = pub(world, "0.0.1")
        root = base / "root-v1"
        shutil.copyfile(world["repo"] / "metadata" / "1.root.json", base / "trusted-root.json")
        done = updater("install", "--from", world["url"], "--root", str(root), "--trust",
                       str(base / "trusted-root.json"))
        assert done.returncode == 0, done.stderr
        world.update(root=root, install_out=json.loads(done.stdout.strip().splitlines()[-1]),
                     install_log=list(server.log))
        world["v2"] = pub(world, "0.0.2")
        yield world
    shutil.rmtree(base, ignore_errors=True)


def copy_root(world: dict, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(world["root"], root, symlinks=True)
    assert current(root) == "tiny-0.0.1-linux-cpu-lite"
    return root


def pack_requests(log: list, names: set[str] | None = None) -> list:
    return [r for r in log if r.path.startswith("/packs/") and (names is None or r.path[7:] in names)]


def test_install_fetches_byte_ranges_of_several_packs(world: dict) -> None:
    v1, out = world["v1"], world["install_out"]
    assert v1["schema_version"] == 2 and len(v1["packs"]) >= 3
    assert all(p["size"] <= world["limit"] for p in v1["packs"].values())
    reqs = pack_requests(world["install_log"])
    assert sorted(r.path[7:] for r in reqs) == sorted(v1["packs"])  # adjacent files: one request per pack
    assert all(re.fullmatch(r"bytes=\d+-\d+", r.range or "") and r.status == 206 for r in reqs)
    files = v1["variants"][0]["files"]
    assert out["fetched_files"] == len(files) and out["requests"] == len(reqs)
    assert sum(r.sent for r in reqs) == sum(size for _p, _s, size, _m in files)  # each file's bytes once, no more
    assert health(world["root"])["version"] == "0.0.1"


def cut_after(n: int):  # noqa: ANN201 (a fetch_servers fault)
    """A 206 with the asked range announced, ``n`` bytes of it, then a reset connection."""
    def fault(h: _Handler, body: bytes) -> None:
        first, last = (int(x) for x in h.headers["Range"][6:].split("-"))
        h.head(206, last - first + 1, {"Content-Range": f"bytes {first}-{last}/{len(body)}"})
        h.write(body[first:first + n])
        h.reset()
    return fault


def test_an_app_only_update_fetches_only_the_new_pack_and_resumes_a_cut(world: dict, tmp_path: Path) -> None:
    root, server = copy_root(world, tmp_path), world["server"]
    v1, v2 = world["v1"], world["v2"]
    new = set(v2["packs"]) - set(v1["packs"])
    assert len(new) == 1 and set(v2["packs"]) - new <= set(v1["packs"])
    new_path = "/packs/" + next(iter(new))
    server.plan(new_path, cut_after(500))
    server.log.clear()
    done = updater("update", "--root", str(root))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["current"] == "tiny-0.0.2-linux-cpu-lite" and health(root)["version"] == "0.0.2"
    reqs = pack_requests(server.log)
    assert {r.path for r in reqs} == {new_path}, "an app-only update reads only the pack this release added"
    first, last = (int(x) for x in reqs[0].range[6:].split("-"))
    assert len(reqs) == 2 and reqs[1].range == f"bytes={first + 500}-{last}"  # resumed where the cut left off
    changed = sum(size for _p, sha, size, _m in v2["variants"][0]["files"] if sha not in v1["blobs"])
    assert sum(r.sent for r in reqs) == changed == v2["packs"][new_path[7:]]["size"] == out["downloaded_bytes"]
    total = sum(size for _p, _s, size, _m in v2["variants"][0]["files"])
    assert out["reused_files"] > out["fetched_files"] and changed < 0.2 * total, out


def test_a_server_that_ignores_range(world: dict, tmp_path: Path) -> None:
    server = world["server"]
    server.ranges = False
    try:
        server.log.clear()
        done = updater("install", "--from", world["url"], "--root", str(tmp_path / "small"), "--trust",
                       str(world["base"] / "trusted-root.json"))
        assert done.returncode == 0, done.stderr  # small packs: each fetched whole once, checked, sliced here
        whole = [r for r in pack_requests(server.log) if r.range is None]
        assert sorted(r.path[7:] for r in whole) == sorted(world["v2"]["packs"])
        done = updater("install", "--from", world["url"], "--root", str(tmp_path / "big"), "--trust",
                       str(world["base"] / "trusted-root.json"), env={"MLFREEZE_PACK_WHOLE_MAX": "1000"})
        assert done.returncode == 3, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "ignores Range requests" in done.stderr
        assert current(tmp_path / "big") is None
    finally:
        server.ranges = True


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_a_damaged_pack_is_refused_and_nothing_switched(world: dict, tmp_path: Path, damage: str) -> None:
    root, server = copy_root(world, tmp_path), world["server"]
    name = next(iter(set(world["v2"]["packs"]) - set(world["v1"]["packs"])))
    good = server.files[f"/packs/{name}"]
    server.files[f"/packs/{name}"] = good[:-100] if damage == "truncated" else good[:50] + b"\0" * 50 + good[100:]
    try:
        done = updater("update", "--root", str(root))
    finally:
        server.files[f"/packs/{name}"] = good
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1
    assert ("the release index says" if damage == "truncated" else "damaged or tampered") in done.stderr
    assert current(root) == "tiny-0.0.1-linux-cpu-lite" and not list((root / ".staging").iterdir())
    assert health(root)["version"] == "0.0.1"


def test_a_file_over_the_pack_limit_is_refused_at_publish(world: dict, tmp_path: Path) -> None:
    bundle = world["bundles"]["0.0.1"]
    biggest = max(record.read(bundle).items(), key=lambda kv: kv[1].size)
    with pytest.raises(PackError, match=re.escape(f"{bundle.name}/{biggest[0]}: {biggest[1].size:,} bytes")) as err:
        publish.publish([bundle], tmp_path / "repo", world["signers"], source_date_epoch=int(time.time()) - 3600,
                        packs=True, pack_limit=biggest[1].size - 1)
    assert err.value.exit_code == 4 and not (tmp_path / "repo").exists()
    assert packs.parse_limit("1900 MiB") > biggest[1].size



@pytest.mark.parametrize("step", ["download", "staged"])
def test_a_kill_during_a_packed_update_leaves_v1_and_the_next_run_finishes(world: dict, tmp_path: Path,
                                                                           step: str) -> None:
    root = copy_root(world, tmp_path)
    done = updater("update", "--root", str(root), env={install.KILL_ENV: step})
    assert done.returncode == -signal.SIGKILL, (done.stdout, done.stderr)
    assert current(root) == "tiny-0.0.1-linux-cpu-lite" and health(root)["version"] == "0.0.1"
    again = updater("update", "--root", str(root))
    assert again.returncode == 0, again.stderr
    assert current(root) == "tiny-0.0.2-linux-cpu-lite" and not (root / ".downloads").exists()


def test_the_frozen_updater_installs_from_packs(world: dict, tmp_path: Path) -> None:
    """The bundle's own ``tiny-update`` (its own Analysis) reads a schema-2 index and byte ranges."""
    done = in_bundle(world["bundles"]["0.0.1"] / "tiny-update", "install", "--from", world["url"], "--root",
                     str(tmp_path / "r"), "--trust", str(world["base"] / "trusted-root.json"))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["current"] == "tiny-0.0.2-linux-cpu-lite"
    # one request per run of adjacent files: 0.0.1's packs have gaps where its 4 changed files lie
    assert len(world["v2"]["packs"]) <= out["requests"] <= len(world["v2"]["packs"]) + 4 < out["fetched_files"]
    assert health(tmp_path / "r")["version"] == "0.0.2"


# --- the range fetch alone, against the same server ------------------------------------------------

PACK = bytes(range(256)) * 64  # 16 KiB
FAST = http.Policy(read_timeout=5, retries=2, backoff=0.01, backoff_max=0.05)


def test_a_redirected_range_request_keeps_its_range(server: FaultServer, tmp_path: Path) -> None:
    """GitHub answers a release asset URL with a 302 to its CDN: the Range must survive it."""
    cdn = server.add("/cdn/p.pack", PACK)
    server.add("/download/p.pack", PACK)
    server.plan("/download/p.pack", redirect(cdn))
    sha = record.hashlib.sha256(PACK[1000:3000]).hexdigest()
    http.fetch_range(server.url("/download/p.pack"), tmp_path / "b", offset=1000, sha256=sha, size=2000,
                     total=len(PACK), policy=FAST)
    assert (tmp_path / "b").read_bytes() == PACK[1000:3000]
    assert [r.range for r in server.requests_for("/cdn/p.pack")] == ["bytes=1000-2999"]


def test_another_pack_behind_the_url_is_refused_at_once(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/p.pack", PACK + b"extra")
    with pytest.raises(FetchError, match="the release index says 16384 bytes"):
        http.fetch_range(url, tmp_path / "b", offset=0, sha256="0" * 64, size=100, total=len(PACK), policy=FAST)
    url = server.add("/short.pack", PACK[:500])
    with pytest.raises(FetchError, match="HTTP 416"):
        http.fetch_range(url, tmp_path / "c", offset=1000, sha256="0" * 64, size=100, total=len(PACK), policy=FAST)
    assert len(server.requests_for("/p.pack")) == 1 and len(server.requests_for("/short.pack")) == 1  # no retries
