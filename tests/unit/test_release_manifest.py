"""``mlfreeze release``: reproducibility, SHA256SUMS, manifest schema, splitting, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from release_bundles import (
    EPOCH,
    fake_bundles_have_no_closure,  # noqa: F401  (autouse)
    make_bundle,
    tree_bytes,
)

from mlfreeze import cli
from mlfreeze.release import assemble as release

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "release-manifest.schema.json").read_text())
ENV = {"SOURCE_DATE_EPOCH": EPOCH}


def _dist(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    make_bundle(dist, "linux-cpu", "lite")
    make_bundle(dist, "linux-cpu", "full", seed=b"full")
    make_bundle(dist, "win-cpu", "full", seed=b"win")
    (dist / "reports").mkdir()
    (dist / "reports" / "sizes-linux-cpu.md").write_text("| a | b |\n")
    return dist


def _jsonschema():  # type: ignore[no-untyped-def]
    return pytest.importorskip("jsonschema", reason="the tests session installs jsonschema")


def _sums(directory: Path) -> dict[str, str]:
    lines = (directory / "SHA256SUMS").read_text().splitlines()
    return {line[66:]: line[:64] for line in lines}


def test_release_twice_gives_byte_identical_files(tmp_path: Path) -> None:
    dist = _dist(tmp_path)
    first = release.release(dist, env=ENV)
    before = tree_bytes(first.directory)
    second = release.release(dist, env=ENV)
    assert tree_bytes(second.directory) == before
    assert sorted(before) == sorted(first.files) == [
        "SHA256SUMS",
        "photo-search-0.1.0-linux-cpu-full.cdx.json", "photo-search-0.1.0-linux-cpu-full.tar.gz",
        "photo-search-0.1.0-linux-cpu-lite.cdx.json", "photo-search-0.1.0-linux-cpu-lite.tar.gz",
        "photo-search-0.1.0-win-cpu-full.cdx.json", "photo-search-0.1.0-win-cpu-full.zip",
        "release-manifest.json"]
    assert not [p for p in dist.iterdir() if p.name.startswith(".")]  # no temp or old folder left


def test_another_epoch_changes_the_archives(tmp_path: Path) -> None:
    dist = _dist(tmp_path)
    a = _sums(release.release(dist, env=ENV).directory)
    b = _sums(release.release(dist, env={"SOURCE_DATE_EPOCH": str(int(EPOCH) + 3600)}).directory)
    assert a["photo-search-0.1.0-linux-cpu-lite.tar.gz"] != b["photo-search-0.1.0-linux-cpu-lite.tar.gz"]
    c = _sums(release.release(dist, env={}).directory)  # falls back to each bundle's built_at
    d = _sums(release.release(dist, env={}).directory)
    assert c == d


def test_sha256sums_lists_every_file_with_its_real_digest(tmp_path: Path) -> None:
    out = release.release(_dist(tmp_path), env=ENV).directory
    sums = _sums(out)
    assert set(sums) == {p.name for p in out.iterdir()} - {"SHA256SUMS"}
    for name, digest in sums.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert (out / "SHA256SUMS").read_text().splitlines() == sorted((out / "SHA256SUMS").read_text().splitlines(),
                                                                   key=lambda line: line[66:])


def test_manifest_validates_and_describes_each_asset(tmp_path: Path) -> None:
    out = release.release(_dist(tmp_path), version="v0.1.0", env=ENV).directory
    manifest = json.loads((out / "release-manifest.json").read_text())
    _jsonschema().validate(manifest, SCHEMA)
    assert manifest["schema_version"] == 2 and manifest["version"] == "0.1.0"
    assets = {a["bundle"]: a for a in manifest["assets"]}
    win = assets["photo-search-0.1.0-win-cpu-full"]
    assert win["archive"].endswith(".zip") and win["archive_format"] == "zip"
    assert win["sha256"] == hashlib.sha256((out / win["archive"]).read_bytes()).hexdigest()
    assert win["size"]["compressed"] == (out / win["archive"]).stat().st_size
    assert win["size"]["on_disk"] == sum(p.stat().st_size for p in (tmp_path / "dist" / win["bundle"]).rglob("*")
                                         if p.is_file() and p.name != ".mlfreeze-stamp")
    assert win["selftest"]["passed"] is True and win["verification"]["checks"] == 31
    assert win["versions"] == {"python": "3.11.7", "torch": "2.14.1+cu130", "cuda": None,
                               "onnxruntime": "onnxruntime-gpu 1.31.1"}
    assert win["models"][0]["id"] == "demo-clip"
    assert win["models"][0]["sha256"]["demo-clip/weights.bin"] == hashlib.sha256(
        b"\x00\x01demo-weights" * 100).hexdigest()
    assert win["record_sha256"] == hashlib.sha256(
        (tmp_path / "dist" / win["bundle"] / "RECORD").read_bytes()).hexdigest()
    assert win["unpinned_goldens"] == []
    lite = assets["photo-search-0.1.0-linux-cpu-lite"]
    assert lite["selftest"]["checks"] == 1 and lite["parts"] == [] and lite["accelerator"] == "cpu"
    assert lite["verification"]["applies"] is False and lite["models"] == []


def test_schema_is_not_vacuous(tmp_path: Path) -> None:
    jsonschema = _jsonschema()
    manifest = release.release(_dist(tmp_path), env=ENV).manifest
    broken = json.loads(json.dumps(manifest))
    broken["assets"][0]["sha256"] = "not-a-digest"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)
    missing = json.loads(json.dumps(manifest))
    del missing["assets"][0]["parts"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(missing, SCHEMA)


def test_archive_above_the_split_limit_is_split(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    make_bundle(dist, "linux-cpu", "lite", payload=400_000, seed=b"big")
    result = release.release(dist, env={**ENV, "MLFREEZE_SPLIT_LIMIT": "100KiB"})
    out = result.directory
    asset = result.manifest["assets"][0]
    name = asset["archive"]
    assert not (out / name).exists()
    assert len(asset["parts"]) >= 2
    assert all(p["size"] <= 100 * 1024 for p in asset["parts"])
    whole = b"".join((out / p["file"]).read_bytes() for p in asset["parts"])
    assert hashlib.sha256(whole).hexdigest() == asset["sha256"]
    sums = _sums(out)
    for p in asset["parts"]:
        assert sums[p["file"]] == p["sha256"] == hashlib.sha256((out / p["file"]).read_bytes()).hexdigest()
    assert (out / f"{name}.sha256").read_text() == f"{asset['sha256']}  {name}\n"
    assert any("GitHub refuses release assets of 2 GiB" in m and "split into" in m for m in result.messages)
    _jsonschema().validate(result.manifest, SCHEMA)


@pytest.mark.parametrize(("raw", "expected"), [("", release.DEFAULT_SPLIT_LIMIT), ("1048576", 1 << 20),
                                               ("100KiB", 102_400), ("1900MiB", 1900 << 20), ("1 gib", 1 << 30),
                                               ("1900 MB", 1_900_000_000), ("60MB", 60_000_000)])
def test_split_limit_parsing(raw: str, expected: int) -> None:
    assert release.split_limit({"MLFREEZE_SPLIT_LIMIT": raw}) == expected
    assert release.DEFAULT_SPLIT_LIMIT < release.GITHUB_ASSET_LIMIT


@pytest.mark.parametrize("raw", ["abc", "-5", "0", "2GiB", "3GB", "1g", "1900M", "1.5 B"])
def test_split_limit_refuses_nonsense(raw: str) -> None:
    with pytest.raises(release.UsageError, match="MLFREEZE_SPLIT_LIMIT"):
        release.split_limit({"MLFREEZE_SPLIT_LIMIT": raw})


def _fails(dist: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = cli.main(["release", str(dist), *extra])
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert not (dist / "release").exists() if dist.is_dir() else True
    assert not [p for p in dist.iterdir() if p.name.startswith(".release")] if dist.is_dir() else True
    return code, err


def test_no_bundles_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dist" / "reports").mkdir(parents=True)
    code, err = _fails(tmp_path / "dist", capsys)
    assert code == 2 and "no bundles" in err
    code, err = _fails(tmp_path / "missing", capsys)
    assert code == 2 and "not a folder" in err


def test_bundle_without_build_info_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = tmp_path / "dist"
    make_bundle(dist, "linux-cpu", "lite")
    (make_bundle(dist, "linux-cpu", "full") / "BUILD-INFO.json").unlink()
    code, err = _fails(dist, capsys)
    assert code == 2 and "photo-search-0.1.0-linux-cpu-full: bundle without BUILD-INFO.json" in err


@pytest.mark.parametrize(("text", "says"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"schema_version": 99}), "schema_version"),
])
def test_malformed_build_info_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                        says: str) -> None:
    dist = tmp_path / "dist"
    (make_bundle(dist) / "BUILD-INFO.json").write_text(text)
    code, err = _fails(dist, capsys)
    assert code == 2 and says in err and "BUILD-INFO.json" in err


@pytest.mark.parametrize(("override", "says"), [
    ({"flavor": "medium"}, "flavor"),
    ({"app": ""}, "'app'"),
    ({"archive_format": "rar", "platform": "nowhere"}, "archive_format"),
    ({"models": [{"id": "m", "kind": "clip", "golden": True, "files": {"a": "XYZ"}}]}, "sha256"),
    ({"distributions": {"torch": 2}}, "distributions"),
    ({"built_at": "yesterday"}, "built_at"),
    ({"selftest": {"passed": "yes"}}, "selftest"),
])
def test_bad_build_info_fields_are_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          override: dict[str, object], says: str) -> None:
    dist = tmp_path / "dist"
    make_bundle(dist, **override)  # type: ignore[arg-type]
    code, err = _fails(dist, capsys)
    assert code == 2 and says in err


def test_failure_keeps_the_previous_release(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = _dist(tmp_path)
    assert cli.main(["release", str(dist)]) == 0
    before = tree_bytes(dist / "release")
    (dist / "photo-search-0.1.0-win-cpu-full" / "BUILD-INFO.json").write_text("{")
    assert cli.main(["release", str(dist)]) == 2
    assert tree_bytes(dist / "release") == before
    assert not [p for p in dist.iterdir() if p.name.startswith(".")]


def test_version_must_match_the_bundles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = _dist(tmp_path)
    assert cli.main(["release", str(dist), "--version", "v0.1.0"]) == 0
    capsys.readouterr()
    code = cli.main(["release", str(dist), "--version", "v0.2.0"])
    err = capsys.readouterr().err
    assert code == 2 and "--version v0.2.0" in err and len(err.splitlines()) == 1
    make_bundle(dist, "linux-cuda", "lite", version="0.3.0")
    (dist / "release").rename(tmp_path / "old")
    code, err = _fails(dist, capsys)
    assert code == 2 and "disagree on version" in err


def test_failed_selftest_is_never_released(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = tmp_path / "dist"
    make_bundle(dist, "linux-cpu", "full", selftest={"passed": False, "checks": 20, "failed": 3})
    code, err = _fails(dist, capsys)
    assert code == 1 and "self" in err and "3 checks" in err


def test_unrelated_folders_are_ignored(tmp_path: Path) -> None:
    dist = _dist(tmp_path)
    (dist / "notes").mkdir()
    (dist / ".cache").mkdir()
    assert len(release.release(dist, env=ENV).manifest["assets"]) == 3


def test_a_symlink_out_of_the_bundle_is_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The audit that release runs first refuses it (RECORD's link rule: an integrity finding)."""
    dist = tmp_path / "dist"
    bundle = make_bundle(dist)
    (bundle / "_internal" / "host-lib").symlink_to("/usr/lib")
    code, err = _fails(dist, capsys)
    assert code == 3 and "host-lib" in err and "outside the bundle" in err
