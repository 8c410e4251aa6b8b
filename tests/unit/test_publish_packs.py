"""`mlfreeze publish --packs`: the packing plan (limit, reuse of earlier packs, determinism), the
schema-2 index it signs, a file over the limit (exit 4, nothing written), and the client reading
byte ranges of packs from a release directory (no sockets: the HTTP side is an integration test)."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
from release_bundles import make_bundle, seal

from mlfreeze import cli
from mlfreeze.errors import PackError, UsageError
from mlfreeze.release import packs, publish
from mlfreeze_runtime import record
from mlfreeze_runtime.update import http, index, install
from mlfreeze_runtime.update.errors import FetchError

pytest.importorskip("tuf")
SDE = int(time.time()) - 3600
LIMIT = 64 * 1024


def blob(label: str, size: int, sha: str | None = None) -> packs.Blob:
    return packs.Blob(sha256=sha or f"{hash(label) & (2**256 - 1):064x}", size=size, source=Path("/dev/null"),
                      label=label)


def test_the_plan_cuts_greedily_under_the_limit_and_keeps_each_blob_once() -> None:
    blobs = [blob(f"b/{i:02d}", 40) for i in range(10)] + [blob("b/dup", 40, sha=blob("b/00", 40).sha256),
                                                          blob("b/empty", 0)]
    planned = packs.plan(blobs, have=packs.Catalog(), limit=100)
    assert [p.size for p in planned] == [80, 80, 80, 80, 80]  # 2 x 40 fit in 100, a third would not
    labels = [b.label for p in planned for b in p.blobs]
    assert labels == [f"b/{i:02d}" for i in range(10)]  # sorted by label, the duplicate and the empty file left out
    assert packs.plan(blobs, have=packs.Catalog(), limit=400)[0].size == 400


def test_the_plan_is_the_same_whatever_order_the_blobs_come_in() -> None:
    blobs = [blob(f"v/{i}", random.Random(i).randint(1, 90)) for i in range(40)]
    first = packs.plan(blobs, have=packs.Catalog(), limit=200)
    shuffled = blobs[:]
    random.Random(7).shuffle(shuffled)
    assert packs.plan(shuffled, have=packs.Catalog(), limit=200) == first
    assert all(p.size <= 200 for p in first) and len(first) > 5


def test_blobs_an_earlier_pack_holds_are_not_packed_again() -> None:
    blobs = [blob(f"b/{i}", 10) for i in range(5)]
    have = packs.Catalog(packs={"p": {"sha256": "0" * 64, "size": 30}},
                         blobs={b.sha256: ["p", 10 * i, 10] for i, b in enumerate(blobs[:3])})
    planned = packs.plan(blobs, have=have, limit=100)
    assert [[b.label for b in p.blobs] for p in planned] == [["b/3", "b/4"]]
    assert packs.plan(blobs[:3], have=have, limit=100) == []


def test_a_file_over_the_limit_names_itself_and_its_size() -> None:
    with pytest.raises(PackError, match=r"b/big: 1,000 bytes .* larger than the pack limit 999 bytes") as err:
        packs.plan([blob("b/small", 10), blob("b/big", 1000)], have=packs.Catalog(), limit=999)
    assert err.value.exit_code == 4


@pytest.mark.parametrize(("text", "ok"), [("1900 MiB", 1900 * 2**20), (None, packs.DEFAULT_LIMIT), ("2 GiB", None),
                                          ("1.5 G", None), ("0", None)])
def test_pack_limit_is_a_size_below_the_asset_limit(text: str | None, ok: int | None) -> None:
    if ok is None:
        with pytest.raises(UsageError):
            packs.parse_limit(text)
    else:
        assert packs.parse_limit(text) == ok


def bundle(tmp: Path, version: str, *, app_seed: bytes, libs: int = 5) -> Path:
    """A lite bundle with an incompressible library and ``libs`` more 30 kB libraries (the same bytes
    in every version: only the launcher carries ``app_seed``)."""
    b = make_bundle(tmp / f"dist-{version}", seed=app_seed, payload=40_000, version=version)
    (b / "_internal" / "libpayload.so").write_bytes(random.Random(b"lib").randbytes(40_000))
    for i in range(libs):
        (b / "_internal" / f"lib{i}.so").write_bytes(random.Random(i).randbytes(30_000))
    b = b.rename(b.with_name(f"photo-search-{version}-linux-cpu-lite"))
    return seal(b, "linux-cpu", "lite", version=version)


@pytest.fixture
def signers(tmp_path: Path) -> dict:
    publish.generate_keys(tmp_path / "keys")
    return publish.load_signers(tmp_path / "keys", env={})


def pub(bundles: list[Path], repo: Path, signers: dict, limit: int = LIMIT) -> dict:
    publish.publish(bundles, repo, signers, source_date_epoch=SDE, packs=True, pack_limit=limit)
    return index.parse((repo / "index.json").read_bytes(), "index.json")


def test_a_packed_release_has_several_packs_under_the_limit_and_a_schema_2_index(tmp_path: Path,
                                                                                 signers: dict) -> None:
    b1 = bundle(tmp_path, "0.1.0", app_seed=b"one")
    doc = pub([b1], tmp_path / "repo", signers)
    files = sorted((tmp_path / "repo" / "packs").iterdir())
    assert doc["schema_version"] == 2 and not (tmp_path / "repo" / "blobs").exists()
    assert len(files) >= 3 and all(p.stat().st_size <= LIMIT for p in files)
    assert sorted(doc["packs"]) == [p.name for p in files]
    for p in files:  # content-addressed: the name is the sha256 of the bytes
        assert p.name == record.hash_file(p)[0] + ".pack" == doc["packs"][p.name]["sha256"] + ".pack"
    for _path, sha, size, _mode in doc["variants"][0]["files"]:
        name, offset, length = doc["blobs"][sha]
        with open(tmp_path / "repo" / "packs" / name, "rb") as f:
            f.seek(offset)
            assert length == size and record.hashlib.sha256(f.read(length)).hexdigest() == sha


def test_the_same_inputs_give_the_same_packs(tmp_path: Path, signers: dict) -> None:
    b1 = bundle(tmp_path, "0.1.0", app_seed=b"one")
    a, b = pub([b1], tmp_path / "a", signers), pub([b1], tmp_path / "b", signers)
    assert a["packs"] == b["packs"] and a["blobs"] == b["blobs"]
    for name in a["packs"]:
        assert (tmp_path / "a" / "packs" / name).read_bytes() == (tmp_path / "b" / "packs" / name).read_bytes()
    again = pub([b1], tmp_path / "a", signers)  # republishing writes no new pack
    assert again["packs"] == a["packs"] and len(list((tmp_path / "a" / "packs").iterdir())) == len(a["packs"])


def test_an_app_only_update_adds_one_small_pack_and_references_the_earlier_ones(tmp_path: Path,
                                                                                signers: dict) -> None:
    repo = tmp_path / "repo"
    v1 = pub([bundle(tmp_path, "0.1.0", app_seed=b"one")], repo, signers)
    b2 = bundle(tmp_path, "0.2.0", app_seed=b"two")
    v2 = pub([b2], repo, signers)
    new = sorted(set(v2["packs"]) - set(v1["packs"]))
    assert len(new) == 1
    changed = {sha: size for _p, sha, size, _m in v2["variants"][0]["files"] if sha not in v1["blobs"]}
    assert changed and len(changed) <= 3  # launcher, RECORD, BUILD-INFO
    assert v2["packs"][new[0]]["size"] == sum(changed.values()) < 5_000
    assert {sha for sha, loc in v2["blobs"].items() if loc[0] == new[0]} == set(changed)
    for sha, loc in v2["blobs"].items():
        if sha not in changed:
            assert loc == v1["blobs"][sha]  # referenced where the earlier release put it


def test_a_file_over_the_pack_limit_exits_4_and_writes_nothing(tmp_path: Path, signers: dict,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    b1 = bundle(tmp_path, "0.1.0", app_seed=b"one")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(SDE))
    repo = tmp_path / "repo"
    rc = cli.main(["publish", str(b1), "--repo", str(repo), "--keys", str(tmp_path / "keys"), "--packs",
                   "--pack-limit", "32 KiB"])
    err = capsys.readouterr().err.strip()
    assert rc == 4 and len(err.splitlines()) == 1, err
    assert "photo-search-0.1.0-linux-cpu-lite/_internal/libpayload.so: 40,000 bytes" in err and "32.0 KiB" in err
    assert not repo.exists() or not any(repo.rglob("*"))
    rc = cli.main(["publish", str(b1), "--repo", str(repo), "--keys", str(tmp_path / "keys"), "--pack-limit", "1 MiB"])
    assert rc == 2 and "go with --packs" in capsys.readouterr().err


def test_pack_urls_are_https_templates(tmp_path: Path, signers: dict) -> None:
    packs.check_url_template("https://github.com/o/r/releases/download/v1/{name}")
    for bad in ("http://example.org/{name}", "https://example.org/fixed.pack", "http://localhost.evil.org/{name}"):
        with pytest.raises(UsageError):
            packs.check_url_template(bad)
    b1 = bundle(tmp_path, "0.1.0", app_seed=b"one", libs=0)
    publish.publish([b1], tmp_path / "repo", signers, source_date_epoch=SDE, packs=True,
                    pack_url="https://github.com/o/r/releases/download/v0.1.0/{name}")
    doc = index.parse((tmp_path / "repo" / "index.json").read_bytes(), "index.json")
    assert [p["url"] for p in doc["packs"].values()] == [
        f"https://github.com/o/r/releases/download/v0.1.0/{n}" for n in doc["packs"]]
    assert {loc.url for loc in index.locations(doc).values()} == {p["url"] for p in doc["packs"].values()}


# --- the client, from a release directory ----------------------------------------------------------

def stage_from(repo: Path, root: Path) -> tuple[Path, install.Outcome]:
    doc = index.parse((repo / "index.json").read_bytes(), "index.json")
    out = install.Outcome(name="x", previous=None)
    return install.stage(root, str(repo), doc["variants"][0], out, locations=index.locations(doc)), out


def test_a_release_directory_with_packs_stages_byte_for_byte(tmp_path: Path, signers: dict) -> None:
    b1 = bundle(tmp_path, "0.1.0", app_seed=b"one")
    pub([b1], tmp_path / "repo", signers)
    staged, out = stage_from(tmp_path / "repo", tmp_path / "root")
    install.audit(staged, record_sha256=record.digest_of(b1), full=True)
    assert out.fetched_files == len(record.read(b1)) + 2 and out.requests == 0  # no HTTP for a directory
    listed = sum(e.size for e in record.read(b1).values()) + sum((b1 / n).stat().st_size
                                                                 for n in ("RECORD", "BUILD-INFO.json"))
    assert out.downloaded_bytes == listed  # each byte once: runs split locally are not counted again


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_pack_in_a_release_directory_is_refused(tmp_path: Path, signers: dict, damage: str) -> None:
    doc = pub([bundle(tmp_path, "0.1.0", app_seed=b"one")], tmp_path / "repo", signers)
    sha = next(r[1] for r in doc["variants"][0]["files"] if r[0] == "_internal/lib3.so")
    name, offset, _ = doc["blobs"][sha]
    pack = tmp_path / "repo" / "packs" / name
    data = bytearray(pack.read_bytes())
    if damage == "flip":
        data[offset + 5] ^= 0xFF
    else:
        del data[-10:]
    pack.write_bytes(bytes(data))
    match = "damaged or tampered" if damage == "flip" else "the release index says"
    with pytest.raises(FetchError, match=match):
        stage_from(tmp_path / "repo", tmp_path / "root")
    assert not list((tmp_path / "root" / ".staging").iterdir())


def _doc(**changes: object) -> dict:
    sha = "a" * 64
    doc = {"format": index.FORMAT, "schema_version": 2, "app": "x", "version": "1",
           "variants": [{"name": "x", "app": "x", "version": "1", "platform": "linux-cpu", "flavor": "lite",
                         "os": "linux", "arch": "x86_64", "accelerator": "cpu", "record_sha256": "c" * 64,
                         "files": [["f", sha, 10, 420], ["empty", index.EMPTY_SHA256, 0, 420]]}],
           "packs": {f"{'b' * 64}.pack": {"sha256": "b" * 64, "size": 100}},
           "blobs": {sha: [f"{'b' * 64}.pack", 90, 10]}}
    doc.update(changes)
    return doc


@pytest.mark.parametrize(("changes", "match"), [
    ({"schema_version": 3}, "schema_version 3 is not one this updater reads"),
    ({"blobs": {"a" * 64: [f"{'b' * 64}.pack", 91, 10]}}, "not inside a listed pack"),
    ({"blobs": {"a" * 64: ["other.pack", 0, 10]}}, "not inside a listed pack"),
    ({"blobs": {}}, "file f has no pack location"),
    ({"packs": {"../x.pack": {"sha256": "b" * 64, "size": 100}}}, "is not '<its sha256>.pack'"),
    ({"packs": None}, "without 'packs'"),
])
def test_the_client_refuses_an_index_it_does_not_understand(changes: dict, match: str) -> None:
    assert index.parse(json.dumps(_doc()).encode(), "i")["schema_version"] == 2
    with pytest.raises(FetchError, match=match) as err:
        index.parse(json.dumps(_doc(**changes)).encode(), "index.json")
    assert "\n" not in err.value.message


@pytest.mark.parametrize(("header", "why"), [("bytes 10-19/100", None), ("bytes 10-19/*", None),
                                             ("bytes 10-19/90", "total"), ("bytes 0-19/100", "range"),
                                             ("bytes 10-18/100", "range"), (None, "range"), ("10-19", "range")])
def test_a_206_must_carry_exactly_the_range_asked(header: str | None, why: str | None) -> None:
    assert http.check_content_range(header, 10, 19, 100) == why


def test_adjacent_blobs_of_a_pack_are_fetched_as_one_run() -> None:
    rows = [index.FileRow(path=f"f{i}", sha256=f"{i:064x}", size=10, mode=420) for i in range(6)]
    where = {0: ("p", 0), 1: ("p", 10), 2: ("p", 20), 3: ("p", 40), 4: ("q", 30), 5: ("q", 0)}
    locs = {r.sha256: index.PackLocation(pack=where[i][0], offset=where[i][1], length=10, pack_size=100,
                                         pack_sha256="0" * 64) for i, r in enumerate(rows)}
    assert [[r.path for r in run] for run in install.runs(rows[::-1], locs)] == [["f0", "f1", "f2"], ["f3"], ["f5"],
                                                                                  ["f4"]]
    assert [[r.path for r in run] for run in install.runs(rows, locs, limit=20)] == [["f0", "f1"], ["f2"], ["f3"],
                                                                                      ["f5"], ["f4"]]
