"""Signed, expiring metadata on a repository on disk: mlfreeze publish writes it, ngclient checks it."""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from release_bundles import make_bundle

from mlfreeze.errors import ConfigError
from mlfreeze.release import publish
from mlfreeze_runtime.update import trust
from mlfreeze_runtime.update.errors import FetchError, UsageError

pytest.importorskip("tuf")
NOW = time.time()
SDE = int(NOW) - 3600


def bundle(tmp: Path, version: str, seed: bytes) -> Path:
    b = make_bundle(tmp / f"dist-{version}", seed=seed, version=version)
    return b.rename(b.with_name(f"photo-search-{version}-linux-cpu-lite"))


@pytest.fixture
def repo(tmp_path: Path) -> dict:
    keys = tmp_path / "keys"
    publish.generate_keys(keys)
    signers = publish.load_signers(keys, env={})
    repo = tmp_path / "repo"
    written = publish.publish([bundle(tmp_path, "1.0", b"one")], repo, signers, source_date_epoch=SDE)
    return {"repo": repo, "signers": signers, "keys": keys, "tmp": tmp_path, "written": written,
            "trusted": repo / "metadata" / "1.root.json"}


def version_of(index_bytes: bytes) -> str:
    return str(json.loads(index_bytes)["version"])


def test_a_release_is_signed_and_read_back(repo: dict) -> None:
    assert repo["written"] == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}
    data = trust.refresh_index(str(repo["repo"]), repo["tmp"] / "client", trust_root=repo["trusted"])
    assert version_of(data) == "1.0" and data == (repo["repo"] / "index.json").read_bytes()


def test_versions_grow_and_expiry_derives_from_source_date_epoch(repo: dict) -> None:
    written = publish.publish([bundle(repo["tmp"], "1.1", b"two")], repo["repo"], repo["signers"],
                              source_date_epoch=SDE, validity=publish.Validity(targets=30))
    assert written == {"targets": 2, "snapshot": 2, "timestamp": 2}
    doc = json.loads((repo["repo"] / "metadata" / "2.targets.json").read_text())
    assert datetime.strptime(doc["signed"]["expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) \
        .timestamp() == SDE + 30 * 86400
    data = trust.refresh_index(str(repo["repo"]), repo["tmp"] / "client", trust_root=repo["trusted"])
    assert version_of(data) == "1.1"


def test_an_expiry_already_past_is_refused_at_publish(repo: dict) -> None:
    with pytest.raises(ConfigError, match="already past"):
        publish.publish([bundle(repo["tmp"], "1.1", b"two")], repo["repo"], repo["signers"],
                        source_date_epoch=SDE - 400 * 86400)


def test_tampered_metadata_is_refused(repo: dict) -> None:
    path = repo["repo"] / "metadata" / "1.targets.json"
    doc = json.loads(path.read_text())
    doc["signed"]["targets"]["index.json"]["length"] += 1
    path.write_text(json.dumps(doc))
    with pytest.raises(FetchError, match="refused"):
        trust.refresh_index(str(repo["repo"]), repo["tmp"] / "client", trust_root=repo["trusted"])


def test_a_tampered_index_is_refused(repo: dict) -> None:
    index = next((repo["repo"] / "targets").glob("*.index.json"))
    index.write_bytes(index.read_bytes().replace(b'"1.0"', b'"9.0"'))
    with pytest.raises(FetchError, match="refused"):
        trust.refresh_index(str(repo["repo"]), repo["tmp"] / "client", trust_root=repo["trusted"])


def test_expired_timestamp_is_refused_and_resign_fixes_it(repo: dict) -> None:
    publish.resign(repo["repo"], repo["signers"], validity=publish.Validity(timestamp=1), now=NOW - 2 * 86400)
    with pytest.raises(FetchError, match="expired"):
        trust.refresh_index(str(repo["repo"]), repo["tmp"] / "client", trust_root=repo["trusted"])
    publish.resign(repo["repo"], repo["signers"], now=NOW)  # the scheduled job
    assert version_of(trust.refresh_index(str(repo["repo"]), repo["tmp"] / "client",
                                          trust_root=repo["trusted"])) == "1.0"


def test_a_rolled_back_repository_is_refused(repo: dict) -> None:
    old = repo["tmp"] / "old-metadata"
    shutil.copytree(repo["repo"] / "metadata", old)
    publish.publish([bundle(repo["tmp"], "1.1", b"two")], repo["repo"], repo["signers"], source_date_epoch=SDE)
    client = repo["tmp"] / "client"
    assert version_of(trust.refresh_index(str(repo["repo"]), client, trust_root=repo["trusted"])) == "1.1"
    shutil.rmtree(repo["repo"] / "metadata")
    shutil.copytree(old, repo["repo"] / "metadata")
    with pytest.raises(FetchError, match="went backwards"):
        trust.refresh_index(str(repo["repo"]), client, trust_root=repo["trusted"])


def test_mix_and_match_of_snapshot_and_targets_is_refused(repo: dict) -> None:
    meta = repo["repo"] / "metadata"
    publish.publish([bundle(repo["tmp"], "1.1", b"two")], repo["repo"], repo["signers"], source_date_epoch=SDE)
    shutil.copyfile(meta / "1.targets.json", meta / "2.targets.json")  # old targets under the new name
    with pytest.raises(FetchError, match="refused"):
        trust.refresh_index(str(repo["repo"]), repo["tmp"] / "client", trust_root=repo["trusted"])


def test_targets_key_rotation_is_followed_and_the_old_key_refused(repo: dict) -> None:
    from securesystemslib.signer import CryptoSigner

    new_targets = CryptoSigner.generate_ed25519()
    assert publish.rotate(repo["repo"], "targets", new_targets, repo["signers"]["root"], now=NOW) == 2
    with pytest.raises(ConfigError, match="not the one root names"):
        publish.publish([bundle(repo["tmp"], "1.1", b"two")], repo["repo"], repo["signers"], source_date_epoch=SDE)
    signers = {**repo["signers"], "targets": new_targets}
    publish.publish([bundle(repo["tmp"], "1.2", b"three")], repo["repo"], signers, source_date_epoch=SDE)
    assert version_of(trust.refresh_index(str(repo["repo"]), repo["tmp"] / "client",
                                          trust_root=repo["trusted"])) == "1.2"


def test_root_key_rotation_is_followed(repo: dict) -> None:
    from securesystemslib.signer import CryptoSigner

    new_root = CryptoSigner.generate_ed25519()
    publish.rotate(repo["repo"], "root", new_root, repo["signers"]["root"], new_root=new_root, now=NOW)
    publish.publish([bundle(repo["tmp"], "1.1", b"two")], repo["repo"], repo["signers"], source_date_epoch=SDE)
    client = repo["tmp"] / "client"
    assert version_of(trust.refresh_index(str(repo["repo"]), client, trust_root=repo["trusted"])) == "1.1"
    assert json.loads((client / ".tuf" / "root.json").read_text())["signed"]["version"] == 2


def test_no_root_of_trust_refuses(repo: dict) -> None:
    with pytest.raises(UsageError, match="no root of trust"):
        trust.refresh_index(str(repo["repo"]), repo["tmp"] / "client", trust_root=None)


def test_keys_come_from_the_environment(repo: dict) -> None:
    env = {f"MLFREEZE_TUF_KEY_{r.upper()}": (repo["keys"] / f"{r}.pem").read_text() for r in publish.ROLES}
    signers = publish.load_signers(None, env=env)
    assert {r: s.public_key.keyid for r, s in signers.items()} == \
        {r: s.public_key.keyid for r, s in repo["signers"].items()}
    with pytest.raises(ConfigError, match="no timestamp key"):
        publish.load_signers(None, env={k: v for k, v in env.items() if "TIMESTAMP" not in k})


def test_the_publish_command_signs_a_release_and_a_model_pack(repo: dict, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from mlfreeze import cli

    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(SDE))
    b = bundle(tmp_path, "2.0", b"cli")
    assert cli.main(["publish", str(b), "--repo", str(repo["repo"]), "--keys", str(repo["keys"])]) == 0
    client = repo["tmp"] / "client"
    assert version_of(trust.refresh_index(str(repo["repo"]), client, trust_root=repo["trusted"])) == "2.0"
    models_dir = tmp_path / "models"
    (models_dir / "m").mkdir(parents=True)
    (models_dir / "models.json").write_text("{}")
    (models_dir / "m" / "w.bin").write_bytes(b"weights")
    assert cli.main(["publish", "--repo", str(repo["repo"]), "--keys", str(repo["keys"]), "--model-pack",
                     str(models_dir), "--app", "photo-search", "--set", "demo", "--pack-version", "7"]) == 0
    pack = json.loads(trust.refresh_index(str(repo["repo"]), client, trust_root=repo["trusted"],
                                          target="model-pack.json"))
    assert pack["version"] == "7" and [r[0] for r in pack["files"]] == ["m/w.bin", "models.json"]
    # the release index stays signed next to the pack
    assert version_of(trust.refresh_index(str(repo["repo"]), client, trust_root=repo["trusted"])) == "2.0"
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert cli.main(["publish", str(b), "--repo", str(repo["repo"]), "--keys", str(repo["keys"])]) == 2


def test_a_trust_file_that_is_not_a_root_is_refused_before_it_is_saved(repo: dict) -> None:
    client = repo["tmp"] / "client"
    meta = repo["repo"] / "metadata"
    bad = repo["tmp"] / "bad.json"
    bad.write_text("not json")
    for path, match in ((meta / "timestamp.json", "it is 'timestamp' metadata, not root"),
                        (bad, "not JSON TUF metadata"), (repo["tmp"] / "missing.json", "cannot read")):
        with pytest.raises(UsageError, match=match):
            trust.refresh_index(str(repo["repo"]), client, trust_root=path)
        assert not (client / ".tuf" / "root.json").exists()
    forged = json.loads((meta / "1.root.json").read_text())
    forged["signed"]["expires"] = "2099-01-01T00:00:00Z"  # the signatures no longer match
    (repo["tmp"] / "forged.json").write_text(json.dumps(forged))
    with pytest.raises(UsageError, match="not signed by a threshold of its own root keys"):
        trust.load_root(repo["tmp"] / "forged.json")
    unsigned = json.loads((meta / "1.root.json").read_text())
    unsigned["signatures"] = []
    (repo["tmp"] / "unsigned.json").write_text(json.dumps(unsigned))
    with pytest.raises(UsageError, match="threshold"):
        trust.load_root(repo["tmp"] / "unsigned.json")
    assert trust.load_root(meta / "1.root.json").version == 1


def test_a_differing_trust_is_refused_naming_the_saved_root_and_reset_replaces_it(repo: dict) -> None:
    client = repo["tmp"] / "client"
    trust.refresh_index(str(repo["repo"]), client, trust_root=repo["trusted"])
    other_keys = repo["tmp"] / "other-keys"
    publish.generate_keys(other_keys)
    other = publish.init_root(repo["tmp"] / "other-repo", publish.load_signers(other_keys, env={}),
                              source_date_epoch=SDE)
    with pytest.raises(UsageError) as exc:
        trust.refresh_index(str(repo["repo"]), client, trust_root=other)
    assert str(client / ".tuf" / "root.json") in exc.value.message and trust.RESET_FLAG in exc.value.message
    saved = (client / ".tuf" / "root.json").read_bytes()
    assert saved == repo["trusted"].read_bytes()  # nothing replaced
    # the same root again is fine; a reset to another root is checked, saved, and then fails on this repo
    trust.refresh_index(str(repo["repo"]), client, trust_root=repo["trusted"])
    with pytest.raises(FetchError, match="refused"):
        trust.refresh_index(str(repo["repo"]), client, trust_root=other, reset=True)
    assert (client / ".tuf" / "root.json").read_bytes() == other.read_bytes()
    assert version_of(trust.refresh_index(str(repo["repo"]), client, trust_root=repo["trusted"], reset=True)) == "1.0"


def test_a_damaged_saved_root_is_one_line_naming_the_reset(repo: dict) -> None:
    client = repo["tmp"] / "client"
    trust.refresh_index(str(repo["repo"]), client, trust_root=repo["trusted"])
    (client / ".tuf" / "root.json").write_text("{not json")
    with pytest.raises(UsageError, match="saved root of trust is damaged.*--reset-trust"):
        trust.refresh_index(str(repo["repo"]), client, trust_root=None)
