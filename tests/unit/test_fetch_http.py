"""Fault injection against real HTTP(S) servers on 127.0.0.1 (threads of this process, so the
fast tier runs it under the ``loopback`` exemption): every case ends with the right bytes in
the cache, or exit 3 and no cache entry."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from pathlib import Path

import pytest
from fetch_servers import (
    FaultServer,
    drop_after,
    ignore_range,
    redirect,
    short_body,
    stall_after,
    status,
    write_manifest,
    wrong_bytes,
    wrong_content_range,
)

from mlfreeze.errors import DownloadError, IntegrityError
from mlfreeze.models.download import Policy
from mlfreeze.models.fetch import fetch_set
from mlfreeze.models.manifest import load_manifest

pytestmark = pytest.mark.loopback

FAST = Policy(connect_timeout=2.0, read_timeout=0.5, retries=3, backoff=0.01, backoff_max=0.05,
              retry_after_max=5.0, url_deadline=20.0, chunk_size=64 * 1024)
BODY = os.urandom(1_000_000)
SHA = hashlib.sha256(BODY).hexdigest()


def _art(urls: list[str], body: bytes = BODY, **extra: object) -> dict[str, object]:
    return {"file": "w.bin", "sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "urls": urls, **extra}


def _fetch(tmp_path: Path, urls: list[str], **kw: object):
    manifest = load_manifest(write_manifest(tmp_path / "models.toml", [_art(urls)]))
    return fetch_set(manifest, "t", cache_dir=tmp_path / "cache", policy=FAST, progress=False, **kw)


def _entry(tmp_path: Path, sha: str = SHA) -> Path:
    return tmp_path / "cache" / "blobs" / sha / "w.bin"


def _ok(tmp_path: Path, urls: list[str]) -> Path:
    got = _fetch(tmp_path, urls)
    path = got["m"].files["w.bin"]
    assert path == _entry(tmp_path)
    assert path.read_bytes() == BODY
    assert not list((tmp_path / "cache" / "tmp").iterdir())  # nothing left half-written
    return path


def _fails(tmp_path: Path, urls: list[str], exc: type[DownloadError] = DownloadError) -> str:
    with pytest.raises(exc) as info:
        _fetch(tmp_path, urls)
    assert info.value.exit_code == 3
    assert not _entry(tmp_path).exists()
    assert "\n" not in info.value.message
    return info.value.message


def test_connection_dropped_mid_body_resumes(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", drop_after(300_000))
    _ok(tmp_path, [url])
    reqs = server.requests_for("/w")
    assert len(reqs) == 2
    assert reqs[1].range is not None and 0 < int(reqs[1].range[6:-1]) <= 300_000  # RST may eat buffered bytes
    assert server.sent_for("/w") < len(BODY) * 1.35  # resumed, not restarted


def test_drops_that_make_progress_do_not_use_up_the_retries(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", *[drop_after(150_000)] * (FAST.retries + 3))  # more drops than retries, each resumes
    _ok(tmp_path, [url])
    assert len(server.requests_for("/w")) == FAST.retries + 4


def test_body_shorter_than_content_length(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", short_body(500_000))
    _ok(tmp_path, [url])
    assert server.requests_for("/w")[1].range == "bytes=500000-"


def test_short_body_every_time_fails_with_exit_3(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", *[short_body(0)] * 10)
    msg = _fails(tmp_path, [url])
    assert url in msg and "short body: 0 of 1000000 bytes" in msg


def test_wrong_bytes_with_right_length(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", wrong_bytes)
    msg = _fails(tmp_path, [url], IntegrityError)
    assert f"expected sha256 {SHA}, received " in msg and url in msg
    assert not (tmp_path / "cache" / "tmp" / f"{SHA}.part").exists()


def test_wrong_bytes_on_first_mirror_then_good(server: FaultServer, tmp_path: Path) -> None:
    bad = server.add("/bad", BODY)
    server.plan("/bad", wrong_bytes)
    good = server.add("/good", BODY)
    _ok(tmp_path, [bad, good])
    assert server.requests_for("/good")[0].range is None  # never resumed from the bad bytes


def test_500_then_200(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", status(500), status(503))
    _ok(tmp_path, [url])
    assert [r.status for r in server.requests_for("/w")] == [500, 503, 200]


def test_500_forever_gives_up_bounded(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", *[status(500)] * 20)
    msg = _fails(tmp_path, [url])
    assert "HTTP 500 (gave up after 4 attempts)" in msg
    assert len(server.requests_for("/w")) == FAST.retries + 1


def test_429_honours_retry_after(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", status(429, {"Retry-After": "1"}))
    start = time.monotonic()
    _ok(tmp_path, [url])
    assert time.monotonic() - start >= 1.0  # FAST.backoff alone would retry after ~10 ms
    assert [r.status for r in server.requests_for("/w")] == [429, 200]


def test_429_with_too_long_retry_after_moves_to_next_mirror(server: FaultServer, tmp_path: Path) -> None:
    busy = server.add("/busy", BODY)
    server.plan("/busy", status(429, {"Retry-After": "3600"}))
    good = server.add("/good", BODY)
    start = time.monotonic()
    _ok(tmp_path, [busy, good])
    assert time.monotonic() - start < 5


def test_range_ignored_restarts_from_zero(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", drop_after(400_000), ignore_range)
    _ok(tmp_path, [url])
    reqs = server.requests_for("/w")
    assert reqs[1].range is not None and reqs[1].status == 200
    assert 0 < int(reqs[1].range[6:-1]) <= 400_000
    # the second answer was the whole file, written from zero (a wrong append would fail the sha)


def test_first_mirror_404_second_good(server: FaultServer, tmp_path: Path) -> None:
    good = server.add("/good", BODY)
    _ok(tmp_path, [server.url("/missing"), good])
    assert [r.status for r in server.requests_for("/missing")] == [404]


def test_all_mirrors_404_names_every_url(server: FaultServer, tmp_path: Path) -> None:
    a, b = server.url("/a"), server.url("/b")
    msg = _fails(tmp_path, [a, b])
    assert f"{a} (HTTP 404)" in msg and f"{b} (HTTP 404)" in msg and "m/w.bin" in msg


def test_redirect_to_non_loopback_http_refused(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", redirect("http://example.com/w.bin"))
    msg = _fails(tmp_path, [url])
    assert "redirect to http://example.com/w.bin refused" in msg


def test_redirect_to_loopback_followed(server: FaultServer, tmp_path: Path) -> None:
    real = server.add("/real", BODY)
    server.add("/w", BODY)
    server.plan("/w", redirect("/real"))
    _ok(tmp_path, [server.url("/w")])
    assert server.requests_for("/real")[0].status == 200
    assert real


def test_plain_http_to_non_loopback_refused_without_a_connection(tmp_path: Path) -> None:
    msg = _fails(tmp_path, ["http://example.com/w.bin"])
    assert "plain http:// refused for non-loopback host example.com" in msg


def test_stall_read_timeout_then_resume(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", stall_after(250_000))
    start = time.monotonic()
    _ok(tmp_path, [url])
    assert time.monotonic() - start < 10
    resumed = server.requests_for("/w")[1].range
    assert resumed is not None and 0 < int(resumed[6:-1]) <= 250_000  # a read cut short loses < 1 chunk


def test_stall_forever_fails_with_exit_3(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", *[stall_after(0)] * 10)
    msg = _fails(tmp_path, [url])
    assert f"no data for {FAST.read_timeout:g}s after 0 bytes this attempt" in msg
    assert len(server.requests_for("/w")) == 2  # a silent server is retried once, not FAST.retries times


def test_server_announces_wrong_size(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY + b"extra")
    msg = _fails(tmp_path, [url], IntegrityError)
    assert f"expected {len(BODY)} bytes, server announces {len(BODY) + 5}" in msg


# ---- hostile archives served over HTTP ----
def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16)
    return info


GOOD_MEMBER = b"onnx" * 1000


@pytest.mark.parametrize(("entries", "why"), [
    ([("a.onnx", GOOD_MEMBER), ("../evil.txt", b"x")], "refused member '../evil.txt': a '..' component"),
    ([("a.onnx", GOOD_MEMBER), ("/etc/evil", b"x")], "refused member '/etc/evil': an absolute path"),
    ([("a.onnx", GOOD_MEMBER), (_symlink_info("link"), b"/etc/passwd")], "refused member 'link': a symbolic link"),
    ([("a.onnx", b"\0" * 50_000_000)], "member 'a.onnx' is larger than its declared 4000 bytes"),
])
def test_hostile_zip_refused(server: FaultServer, tmp_path: Path, entries: list, why: str) -> None:
    data = _zip(entries)
    url = server.add("/a.zip", data)
    art = {"file": "a.zip", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "urls": [url],
           "extract": True, "members": {"a.onnx": {"size": len(GOOD_MEMBER)}}}
    manifest = load_manifest(write_manifest(tmp_path / "models.toml", [art]))
    with pytest.raises(IntegrityError) as info:
        fetch_set(manifest, "t", cache_dir=tmp_path / "cache", policy=FAST, progress=False)
    assert why in info.value.message
    assert info.value.exit_code == 3
    cache = tmp_path / "cache"
    assert not list((cache / "trees").iterdir())  # no extracted entry
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    assert [p.name for p in (cache / "tmp").iterdir() if not p.name.endswith(".part")] == []
    if entries[-1][0] == "a.onnx":  # the bomb: nothing near 50 MB was written
        assert sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) < 2 * len(data) + 10_000_000


def test_good_zip_extracts_bundle_members_only(server: FaultServer, tmp_path: Path) -> None:
    det, rec, extra = b"det" * 100, b"rec" * 100, b"age" * 100
    data = _zip([("det.onnx", det), ("rec.onnx", rec), ("age.onnx", extra), ("README", b"hi")])
    url = server.add("/f.zip", data)
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    art = {"file": "f.zip", "sha256": sha(data), "size": len(data), "urls": [url], "extract": True,
           "members": {"det.onnx": {"sha256": sha(det)}, "rec.onnx": {"sha256": sha(rec), "size": len(rec)},
                       "age.onnx": {"sha256": sha(extra), "bundle": False}}}
    manifest = load_manifest(write_manifest(tmp_path / "models.toml", [art]))
    got = fetch_set(manifest, "t", cache_dir=tmp_path / "cache", policy=FAST, progress=False)["m"]
    assert sorted(got.files) == ["age.onnx", "det.onnx", "rec.onnx"]
    assert sorted(got.bundle_files) == ["det.onnx", "rec.onnx"]
    assert got.files["rec.onnx"].read_bytes() == rec
    assert not (got.files["det.onnx"].parent / "README").exists()
    # second run: served from the verified cache, no request
    before = len(server.log)
    again = fetch_set(manifest, "t", cache_dir=tmp_path / "cache", policy=FAST, progress=False)["m"]
    assert again.files == got.files and len(server.log) == before


def test_prefix_without_a_recorded_source_is_not_resumed(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    part = tmp_path / "cache" / "tmp" / f"{SHA}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # a prefix nobody vouches for
    _ok(tmp_path, [url])
    assert [r.range for r in server.requests_for("/w")] == [None]


def test_wrong_resumed_prefix_is_downloaded_again_from_zero(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    part = tmp_path / "cache" / "tmp" / f"{SHA}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # a prefix that is not the artifact's, recorded as from this URL
    (part.parent / f"{SHA}.part.source").write_text(json.dumps({"url": url, "etag": server.etag("/w")}))
    _ok(tmp_path, [url])
    reqs = server.requests_for("/w")
    assert [(r.range, r.if_range) for r in reqs] == [("bytes=1000-", server.etag("/w")), (None, None)]


def test_206_with_a_content_range_that_does_not_continue_restarts(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/w", BODY)
    server.plan("/w", short_body(300_000), wrong_content_range)
    _ok(tmp_path, [url])
    assert [r.range for r in server.requests_for("/w")] == [None, "bytes=300000-", None]


def test_connection_refused_is_unreachable_and_bounded(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/w"
    msg = _fails(tmp_path, [url])
    assert "model hosts unreachable (127.0.0.1)" in msg
    assert "connection refused (gave up after 3 attempts)" in msg and "MLFREEZE_MODEL_MIRROR" in msg
