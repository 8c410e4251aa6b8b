"""`mlfreeze publish --release DIR`: the merge job signs the bundles of a release directory,
unpacked from their archives (split parts rejoined, tar.gz and zip, modes and symlinks kept) and
checked against the manifest; keys: root only for the first publish, resign with the online keys."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from release_bundles import (
    EPOCH,
    fake_bundles_have_no_closure,  # noqa: F401  (autouse)
    make_bundle,
)

from mlfreeze import cli
from mlfreeze.errors import ConfigError, IntegrityError
from mlfreeze.release import assemble as release
from mlfreeze.release import publish
from mlfreeze_runtime import record

pytest.importorskip("tuf")


def _release(tmp_path: Path) -> tuple[dict[str, Path], Path]:
    dist = tmp_path / "dist"
    made = {"lite": make_bundle(dist, "linux-cpu", "lite", payload=300_000, seed=b"big"),
            "win": make_bundle(dist, "win-cpu", "full", seed=b"win")}
    out = release.release(dist, env={"SOURCE_DATE_EPOCH": EPOCH, "MLFREEZE_SPLIT_LIMIT": "100KiB"}).directory
    return made, out


def test_unpacked_release_bundles_are_the_bundles_byte_for_byte(tmp_path: Path) -> None:
    made, out = _release(tmp_path)
    manifest = json.loads((out / "release-manifest.json").read_text())
    assert any(a["parts"] for a in manifest["assets"]) and {a["archive_format"] for a in manifest["assets"]} == \
        {"tar.gz", "zip"}
    dest = tmp_path / "unpacked"
    dest.mkdir()
    bundles = publish.unpack_release(out, dest)
    assert sorted(b.name for b in bundles) == sorted(b.name for b in made.values())
    for bundle in bundles:
        original = made["lite" if "lite" in bundle.name else "win"]
        rows = record.read(original)
        assert record.read(bundle) == rows
        for rel in rows:
            a, b = original / rel, bundle / rel
            assert a.is_symlink() == b.is_symlink() and (a.is_symlink() or a.read_bytes() == b.read_bytes()), rel
            if not a.is_symlink():
                assert stat.S_IMODE(a.stat().st_mode) & 0o100 == stat.S_IMODE(b.stat().st_mode) & 0o100, rel
    assert not list(dest.glob("*.tar.gz")) and not list(dest.glob("*.zip"))


def test_a_damaged_part_is_refused(tmp_path: Path) -> None:
    _, out = _release(tmp_path)
    manifest = json.loads((out / "release-manifest.json").read_text())
    part = out / next(a for a in manifest["assets"] if a["parts"])["parts"][1]["file"]
    part.write_bytes(part.read_bytes()[:-1] + b"\0")
    dest = tmp_path / "unpacked"
    dest.mkdir()
    with pytest.raises(IntegrityError, match="not the manifest's"):
        publish.unpack_release(out, dest)


def test_publish_needs_root_only_the_first_time_and_resign_only_the_online_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made, out = _release(tmp_path)
    keys = tmp_path / "keys"
    publish.generate_keys(keys)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(__import__("time").time()) - 60))
    repo = tmp_path / "repo"
    base = ["publish", "--repo", str(repo), "--keys", str(keys)]

    def run(*extra: str) -> int:
        return publish.main(cli.build_parser().parse_args([*base, *extra]))

    assert run("--init-root") == 0  # before the first release
    root_v1 = (repo / "metadata" / "1.root.json").read_bytes()
    assert json.loads(root_v1)["signed"]["_type"] == "root"
    assert run("--release", str(out)) == 0
    assert (repo / "metadata" / "1.root.json").read_bytes() == root_v1  # the root bundles froze in stays
    doc = json.loads((repo / "index.json").read_text())
    assert sorted(v["name"] for v in doc["variants"]) == sorted(b.name for b in made.values())
    os.remove(keys / "root.pem")  # offline from now on
    assert run("--release", str(out)) == 0
    for role in ("root", "targets"):
        (keys / f"{role}.pem").unlink(missing_ok=True)
    assert run("--release", str(out), "--resign") == 0
    with pytest.raises(ConfigError, match="no targets key"):
        run("--release", str(out))


def test_publish_without_the_update_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    from mlfreeze.errors import UsageError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "securesystemslib" else real(name, *a))
    with pytest.raises(UsageError, match=r"needs securesystemslib.*pip install 'mlfreeze\[update\]'"):
        publish.main(cli.build_parser().parse_args(["publish", "--repo", str(tmp_path),
                                                "--generate-keys", str(tmp_path / "keys")]))
    assert not (tmp_path / "keys").exists()


def test_publish_refuses_a_symlink_that_leaves_the_bundle(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not publish me")
    b = make_bundle(tmp_path / "dist")
    (b / "_internal" / "leak.txt").symlink_to(secret)
    keys = tmp_path / "keys"
    publish.generate_keys(keys)
    with pytest.raises(IntegrityError, match="leak.txt.*outside the bundle"):
        publish.publish([b], tmp_path / "repo", publish.load_signers(keys, env={}), source_date_epoch=1_700_000_000)
    blobs = list((tmp_path / "repo").rglob("blobs/*/*")) if (tmp_path / "repo").exists() else []
    assert all(p.read_bytes() != secret.read_bytes() for p in blobs)
