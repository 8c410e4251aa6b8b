"""The fetch stage without a network: file:// and relative URLs, mirror directories, the cache,
offline mode, safe extraction, free space, URL policy."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from mlfreeze import cli
from mlfreeze.errors import DownloadError, IntegrityError
from mlfreeze.models.cache import TREE_INDEX, Cache
from mlfreeze.models.download import Policy, check_url
from mlfreeze.models.download.retry import UrlFailed, policy_from_env
from mlfreeze.models.extract import extract
from mlfreeze.models.fetch import FetchedModel, fetch_set, main
from mlfreeze.models.manifest import ArtifactSpec, MemberSpec, load_manifest

FAST = Policy(retries=0, backoff=0.0)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


DET, REC, AGE = b"det" * 1000, b"rec" * 1000, b"age" * 1000
WEIGHTS = b"w" * 5000
ZIPDATA = _zip([("det.onnx", DET), ("sub/rec.onnx", REC), ("age.onnx", AGE)])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A manifest with a relative-URL weights file and a relative-URL zip (like the demo set)."""
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "w.bin").write_bytes(WEIGHTS)
    (tmp_path / "demo" / "f.zip").write_bytes(ZIPDATA)
    (tmp_path / "models.toml").write_text(f"""
[sets]
t = ["clip", "faces"]

[models.clip]
kind = "clip"
embed_dim = 8
license = "test"
arch = "ViT-T"

[[models.clip.artifacts]]
file = "w.bin"
sha256 = "{sha(WEIGHTS)}"
size = {len(WEIGHTS)}
urls = ["demo/w.bin"]

[[models.clip.artifacts]]
file = "cfg.json"
sha256 = "{sha(b'{}')}"
size = 2
urls = ["demo/cfg.json"]
role = "config"
bundle = false

[models.faces]
kind = "insightface"
embed_dim = 8
license = "test"

[[models.faces.artifacts]]
file = "f.zip"
sha256 = "{sha(ZIPDATA)}"
size = {len(ZIPDATA)}
urls = ["demo/f.zip"]
extract = true

[models.faces.artifacts.members]
"det.onnx" = {{ sha256 = "{sha(DET)}", size = {len(DET)} }}
"sub/rec.onnx" = {{ sha256 = "{sha(REC)}" }}
"age.onnx" = {{ bundle = false }}
""")
    (tmp_path / "demo" / "cfg.json").write_bytes(b"{}")
    return tmp_path


def _fetch(project: Path, **kw: object) -> dict[str, FetchedModel]:
    return fetch_set(load_manifest(project / "models.toml"), "t", cache_dir=project / "cache", policy=FAST,
                     progress=False, **kw)


def test_relative_urls_fetch_into_the_content_addressed_cache(project: Path) -> None:
    got = _fetch(project)
    clip, faces = got["clip"], got["faces"]
    assert clip.files["w.bin"] == project / "cache" / "blobs" / sha(WEIGHTS) / "w.bin"
    assert clip.files["w.bin"].read_bytes() == WEIGHTS
    assert sorted(clip.bundle_files) == ["w.bin"]  # cfg.json has bundle = false
    assert clip.role("config") == clip.files["cfg.json"] and clip.role("weights") == clip.files["w.bin"]
    assert clip.role("tokenizer") is None
    assert sorted(faces.files) == ["age.onnx", "det.onnx", "sub/rec.onnx"]
    assert sorted(faces.bundle_files) == ["det.onnx", "sub/rec.onnx"]
    assert faces.files["sub/rec.onnx"] == project / "cache" / "trees" / sha(ZIPDATA) / "sub" / "rec.onnx"
    assert faces.files["sub/rec.onnx"].read_bytes() == REC
    index = json.loads((project / "cache" / "trees" / sha(ZIPDATA) / TREE_INDEX).read_text())
    assert index["age.onnx"] == {"size": len(AGE), "sha256": sha(AGE)}
    assert not list((project / "cache" / "tmp").iterdir())


def test_offline_reads_local_files_and_lists_what_only_the_network_has(project: Path) -> None:
    # offline means no network, not cache only: relative paths (file:// URLs) still work ...
    got = _fetch(project, offline=True)
    assert got["clip"].files["w.bin"].read_bytes() == WEIGHTS
    assert got["faces"].files["det.onnx"].read_bytes() == DET
    # ... and once cached, the source is not needed
    (project / "demo" / "w.bin").unlink()
    assert _fetch(project, offline=True)["clip"].files["w.bin"].read_bytes() == WEIGHTS
    # an https URL is never opened offline (the guard would fail the test); missing ones are listed
    text = (project / "models.toml").read_text()
    text = text.replace('urls = ["demo/cfg.json"]', 'urls = ["https://example.invalid/cfg.json"]')
    text = text.replace('urls = ["demo/f.zip"]', 'urls = ["demo/gone.zip", "https://example.invalid/f.zip"]')
    (project / "models.toml").write_text(text)
    import shutil

    for gone in (f"blobs/{sha(b'{}')}", f"blobs/{sha(ZIPDATA)}", "trees"):
        shutil.rmtree(project / "cache" / gone)
    with pytest.raises(DownloadError) as info:
        _fetch(project, offline=True)
    msg = info.value.message
    assert info.value.exit_code == 3 and msg.startswith("offline: 2 artifact(s) of set 't'")
    assert "clip/cfg.json (2 bytes)" in msg and f"faces/f.zip ({len(ZIPDATA):,} bytes)" in msg
    assert "clip/w.bin" not in msg  # it came from the cache


def test_offline_env_uses_a_mirror_directory(project: Path, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    mirror = tmp_path_factory.mktemp("mirror")
    (mirror / "w.bin").write_bytes(WEIGHTS)
    text = (project / "models.toml").read_text().replace('urls = ["demo/w.bin"]',
                                                          'urls = ["https://example.invalid/w.bin"]')
    (project / "models.toml").write_text(text)
    monkeypatch.setenv("MLFREEZE_OFFLINE", "1")
    monkeypatch.setenv("MLFREEZE_MODEL_MIRROR", str(mirror))
    assert _fetch(project)["clip"].files["w.bin"].read_bytes() == WEIGHTS


def test_offline_demo_set_into_an_empty_cache(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = cli.main(["fetch", "--set", "demo", "--offline", "--cache", str(tmp_path / "cache")])
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "ok demo-clip:" in out and "ok demo-faces:" in out
    assert len(list((tmp_path / "cache" / "blobs").iterdir())) >= 2


def test_corrupt_blob_and_tree_member_are_replaced(project: Path, capsys: pytest.CaptureFixture) -> None:
    got = _fetch(project)
    got["clip"].files["w.bin"].write_bytes(b"x" * len(WEIGHTS))
    got["faces"].files["det.onnx"].write_bytes(b"d" * len(DET))
    capsys.readouterr()
    again = _fetch(project)
    err = capsys.readouterr().err
    assert "w.bin is corrupt (expected sha256" in err
    assert "member det.onnx: expected sha256" in err and "removing it and fetching again" in err
    assert again["clip"].files["w.bin"].read_bytes() == WEIGHTS
    assert again["faces"].files["det.onnx"].read_bytes() == DET


def test_truncated_blob_is_replaced(project: Path, capsys: pytest.CaptureFixture) -> None:
    path = _fetch(project)["clip"].files["w.bin"]
    path.write_bytes(WEIGHTS[:10])
    assert _fetch(project)["clip"].files["w.bin"].read_bytes() == WEIGHTS
    assert f"expected {len(WEIGHTS)} bytes, found 10" in capsys.readouterr().err


def test_wrong_local_file_is_integrity_error(project: Path) -> None:
    (project / "demo" / "w.bin").write_bytes(b"W" * len(WEIGHTS))
    with pytest.raises(IntegrityError) as info:
        _fetch(project)
    msg = info.value.message
    assert f"expected sha256 {sha(WEIGHTS)}, received {sha(b'W' * len(WEIGHTS))}" in msg
    assert (project / "demo" / "w.bin").as_uri() in msg
    assert not (project / "cache" / "blobs" / sha(WEIGHTS)).exists()


def test_wrong_size_local_file(project: Path) -> None:
    (project / "demo" / "w.bin").write_bytes(b"short")
    with pytest.raises(IntegrityError, match=f"expected {len(WEIGHTS)} bytes, the file has 5"):
        _fetch(project)


def test_mirror_directory_tried_first(project: Path, tmp_path_factory: pytest.TempPathFactory,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    mirror = tmp_path_factory.mktemp("mirror")
    (mirror / "w.bin").write_bytes(WEIGHTS)
    (project / "demo" / "w.bin").unlink()
    monkeypatch.setenv("MLFREEZE_MODEL_MIRROR", str(mirror))
    got = _fetch(project)
    assert got["clip"].files["w.bin"].read_bytes() == WEIGHTS
    assert f"from {(mirror / 'w.bin').as_uri()}" in capsys.readouterr().err


def test_free_space_checked_before_download(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 100, 100))
    with pytest.raises(DownloadError) as info:
        _fetch(project)
    assert f"needs {len(WEIGHTS):,} bytes but only 100 are free" in info.value.message
    assert info.value.exit_code == 3


def test_cli_main_in_process(project: Path, capsys: pytest.CaptureFixture) -> None:
    rc = cli.main(["fetch", "--manifest", str(project / "models.toml"), "--cache", str(project / "cache"),
                   "--set", "t"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "ok faces: 3 files verified, 2 for the bundle" in out
    rc = cli.main(["fetch", "--manifest", str(project / "models.toml"), "--set", "nope"])
    assert rc == 2
    assert "unknown model set 'nope'" in capsys.readouterr().err


def test_main_defaults_set_from_pyproject(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the project config is validated whole (mlfreeze.project.config): a real project, not a lone key
    (project / "app.py").write_text("")
    (project / "pyproject.toml").write_text('[project]\nversion = "1"\n[tool.mlfreeze]\napp = "a"\nentry = "app.py"\n'
                                            'model_set = "t"\n')
    monkeypatch.chdir(project)
    args = argparse.Namespace(manifest=str(project / "models.toml"), model_set=None, cache=str(project / "c"),
                              offline=False)
    assert main(args) == 0
    assert (project / "c" / "blobs" / sha(WEIGHTS) / "w.bin").is_file()


# ---- extraction ----
def _art(data: bytes, members: str) -> ArtifactSpec:
    """An archive spec; ``members`` like "a:1000,b" (name[:declared size])."""
    specs = []
    for item in members.split(","):
        name, _, size = item.partition(":")
        specs.append(MemberSpec(name=name, size=int(size) if size else None))
    return ArtifactSpec(file="x.zip", sha256=sha(data), size=len(data), urls=("x",), extract=True,
                        members=tuple(specs))


def _link(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16
    return info


@pytest.mark.parametrize(("entries", "why"), [
    ([("a", b"1"), ("../x", b"2")], "'../x': a '..' component"),
    ([("a", b"1"), ("d/../../x", b"2")], "a '..' component"),
    ([("a", b"1"), ("/abs", b"2")], "'/abs': an absolute path"),
    ([("a", b"1"), ("C:/win", b"2")], "an absolute path"),
    ([("a", b"1"), ("b\\c", b"2")], "a backslash"),
    ([("a", b"1"), (_link("l"), b"/etc/passwd")], "'l': a symbolic link"),
    ([("b", b"1")], "declared member 'a' is not in the archive"),
])
def test_hostile_members_refused(tmp_path: Path, entries: list, why: str) -> None:
    data = _zip(entries)
    (tmp_path / "x.zip").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityError) as info:
        extract(tmp_path / "x.zip", out, _art(data, "a"))
    assert why in info.value.message
    assert not list(out.iterdir())  # every member is checked before anything is written
    assert not (tmp_path / "x").exists()


def test_member_larger_than_declared_stops_early(tmp_path: Path) -> None:
    data = _zip([("a", b"\0" * 20_000_000)])
    (tmp_path / "x.zip").write_bytes(data)
    with pytest.raises(IntegrityError, match="'a' is larger than its declared 1000 bytes"):
        extract(tmp_path / "x.zip", tmp_path, _art(data, "a:1000"))
    assert (tmp_path / "a").stat().st_size <= 1000 + (1 << 20)


def test_total_bounded_when_sizes_undeclared(tmp_path: Path) -> None:
    import dataclasses

    data = _zip([("a", b"\0" * 5_000_000)])  # compresses to a few kB
    (tmp_path / "x.zip").write_bytes(data)
    art = dataclasses.replace(_art(data, "a"), max_unpacked=1_000_000)
    with pytest.raises(IntegrityError, match="unpack to more than 1000000 bytes"):
        extract(tmp_path / "x.zip", tmp_path, art)


def test_unpack_limit_defaults() -> None:
    import dataclasses

    art = _art(b"z" * 100_000_000, "a,b")
    assert art.unpack_limit == 400_000_000
    assert _art(b"z", "a").unpack_limit == 64 << 20  # type: ignore[attr-defined]
    sized = _art(b"z", "a:10,b:20")
    assert sized.unpack_limit == 30  # type: ignore[attr-defined]
    assert dataclasses.replace(sized, max_unpacked=5).unpack_limit == 5  # type: ignore[type-var]


def test_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(IntegrityError, match="not a valid zip"):
        extract(tmp_path / "x.zip", tmp_path, _art(b"not a zip", "a"))


def test_corrupt_deflate_data_is_an_integrity_error(tmp_path: Path) -> None:
    data = bytearray(_zip([("a", bytes(range(256)) * 64)]))
    start = data.index(b"a", 30) + 1  # the member's compressed bytes follow its local header and name
    data[start:start + 40] = bytes(40)
    (tmp_path / "x.zip").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="not a valid zip"):
        extract(tmp_path / "x.zip", tmp_path, _art(bytes(data), "a"))


# ---- URL policy ----
@pytest.mark.parametrize("url", ["https://h/x", "http://127.0.0.1:8/x", "http://localhost/x", "http://[::1]/x",
                                 "http://127.5.5.5/x", "file:///tmp/x"])
def test_allowed_urls(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(("url", "why"), [("http://example.com/x", "plain http:// refused"),
                                          ("http://10.0.0.1/x", "plain http:// refused"),
                                          ("ftp://h/x", "scheme 'ftp' refused")])
def test_refused_urls(url: str, why: str) -> None:
    with pytest.raises(UrlFailed, match=why):
        check_url(url)


def test_cache_publish_is_a_rename(tmp_path: Path) -> None:
    from mlfreeze.models.manifest import ArtifactSpec

    cache = Cache(tmp_path)
    art = ArtifactSpec(file="w.bin", sha256=sha(b"abc"), size=3, urls=("x",))
    part = cache.partial_path(art)
    part.write_bytes(b"abc")
    ino = part.stat().st_ino
    final = cache.publish_blob(art, part)
    assert final.stat().st_ino == ino and not part.exists()
    assert cache.verify_blob(art) == final


def test_leftover_wrong_partial_is_discarded(project: Path) -> None:
    # a complete-length partial from an earlier run holding wrong bytes must not fail the source
    from mlfreeze.models.download import download

    part = project / "part"
    part.write_bytes(b"Z" * len(WEIGHTS))
    url = download([(project / "demo" / "w.bin").as_uri()], part, name="w", size=len(WEIGHTS),
                   sha256=sha(WEIGHTS), policy=FAST, progress=False)
    assert url.startswith("file://") and part.read_bytes() == WEIGHTS
    assert download(["https://never.invalid/w"], part, name="w", size=len(WEIGHTS), sha256=sha(WEIGHTS),
                    policy=FAST, progress=False) == "(a complete earlier download)"


def test_unwritable_cache_is_one_line(project: Path) -> None:
    blocker = project / "file"
    blocker.write_text("")
    with pytest.raises(DownloadError, match="cannot use the model cache"):
        fetch_set(load_manifest(project / "models.toml"), "t", cache_dir=blocker / "c", policy=FAST)


def test_policy_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlfreeze.errors import ConfigError

    monkeypatch.setenv("MLFREEZE_FETCH_RETRIES", "2")
    monkeypatch.setenv("MLFREEZE_FETCH_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("MLFREEZE_FETCH_FSYNC", "0")
    monkeypatch.setenv("MLFREEZE_FETCH_MIN_RATE", "4096")
    monkeypatch.setenv("MLFREEZE_FETCH_RATE_WINDOW", "7")
    monkeypatch.setenv("MLFREEZE_FETCH_ATTEMPT_DEADLINE", "90")
    monkeypatch.setenv("MLFREEZE_FETCH_URL_DEADLINE", "120")
    p = policy_from_env()
    assert (p.retries, p.read_timeout, p.fsync, p.connect_timeout) == (2, 0.5, False, 10.0)
    assert (p.min_rate, p.rate_window, p.attempt_deadline, p.url_deadline) == (4096.0, 7.0, 90.0, 120.0)
    assert p.idle_timeout == 0.5 and Policy(read_timeout=60, rate_window=30).idle_timeout == 30
    assert all(0.5 * min(p.backoff_max, 2 ** (n - 1)) <= p.delay(n) <= min(p.backoff_max, 2 ** (n - 1))
               for n in range(1, 8))
    monkeypatch.setenv("MLFREEZE_FETCH_BACKOFF", "fast")
    with pytest.raises(ConfigError, match="MLFREEZE_FETCH_BACKOFF='fast' is not a number"):
        policy_from_env()


def test_unreadable_tree_index_is_corrupt(project: Path, capsys: pytest.CaptureFixture) -> None:
    faces = _fetch(project)["faces"]
    index = faces.files["det.onnx"].parent / TREE_INDEX
    index.write_text("[1, 2]")
    again = _fetch(project)["faces"]
    assert "its index is missing or unreadable" in capsys.readouterr().err
    assert again.files["det.onnx"].read_bytes() == DET and json.loads(index.read_text())["det.onnx"]["size"] == len(DET)


def test_wrong_size_mirror_keeps_a_resumable_prefix(project: Path) -> None:
    from mlfreeze.models.download import AllUrlsFailed, download

    part = project / "part"
    part.write_bytes(WEIGHTS[:1000])  # an earlier run's prefix
    (project / "bad.bin").write_bytes(b"short")
    with pytest.raises(AllUrlsFailed):
        download([(project / "bad.bin").as_uri()], part, name="w", size=len(WEIGHTS), sha256=sha(WEIGHTS),
                 policy=FAST, progress=False)
    assert part.read_bytes() == WEIGHTS[:1000]


def test_requests_is_imported_by_one_module_only(root: Path) -> None:
    import ast

    importers = set()
    for path in sorted((root / "src" / "mlfreeze").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] in ("requests", "urllib3") for n in names):
                importers.add(path.name)
    assert importers == {"transfer.py"}
