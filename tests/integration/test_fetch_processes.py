"""Real processes: parallel fetches sharing one cache, a fetch killed with SIGKILL, the CLI."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fetch_servers import FaultServer, stall_after, write_manifest

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFREEZE_")}
    env.update({"PYTHONPATH": str(ROOT), "MLFREEZE_FETCH_BACKOFF": "0.01", "MLFREEZE_FETCH_READ_TIMEOUT": "5"})
    env.update(extra)
    return env


def _cmd(manifest: Path, cache: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "mlfreeze", "fetch", "--manifest", str(manifest), "--cache", str(cache),
            "--set", "t", *more]


def _manifest(tmp_path: Path, url: str, body: bytes) -> Path:
    art = {"file": "w.bin", "sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "urls": [url]}
    return write_manifest(tmp_path / "models.toml", [art])


def test_four_processes_one_download(server: FaultServer, tmp_path: Path) -> None:
    body = os.urandom(1_500_000)
    manifest = _manifest(tmp_path, server.add("/w", body), body)
    server.rate = 600_000  # ~2.5 s per download: the four processes overlap
    cache = tmp_path / "cache"
    procs = [subprocess.Popen(_cmd(manifest, cache), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    assert len(server.requests_for("/w")) == 1
    assert server.sent_for("/w") == len(body)
    blob = cache / "blobs" / hashlib.sha256(body).hexdigest() / "w.bin"
    assert blob.read_bytes() == body
    assert all("ok m: 1 files verified" in out for out, _ in outs)
    assert any("waiting for another mlfreeze process" in err for _, err in outs)


def test_sigkill_halfway_then_resume(server: FaultServer, tmp_path: Path) -> None:
    body = os.urandom(2 << 20)
    sha = hashlib.sha256(body).hexdigest()
    manifest = _manifest(tmp_path, server.add("/w", body), body)
    server.plan("/w", stall_after((1 << 20) + 1000, seconds=60))  # half, then silence
    cache = tmp_path / "cache"
    partial = cache / "tmp" / f"{sha}.part"
    child = subprocess.Popen(_cmd(manifest, cache), env=_env(MLFREEZE_FETCH_READ_TIMEOUT="60"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size >= 1 << 20):
        assert child.poll() is None and time.monotonic() < deadline, "the child never got halfway"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert not (cache / "blobs" / sha).exists() or not any((cache / "blobs" / sha).iterdir())
    kept = partial.stat().st_size  # every byte that arrived (reads return what came, not full 1 MiB blocks)
    assert (1 << 20) <= kept <= (1 << 20) + 1000
    assert (cache / "tmp" / f"{sha}.part.source").is_file()  # the source the resume must match

    again = subprocess.run(_cmd(manifest, cache), env=_env(), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    second = server.requests_for("/w")[1]
    assert (second.range, second.if_range, second.status) == (f"bytes={kept}-", server.etag("/w"), 206)
    assert second.sent == len(body) - kept  # 50 % on the second run
    assert (cache / "blobs" / sha / "w.bin").read_bytes() == body
    assert not partial.exists() and not list((cache / "tmp").glob("*.source"))


def test_cli_default_set_without_internet_names_demo_and_mirror(tmp_path: Path) -> None:
    # the real default-set entries, with hosts that cannot resolve (.invalid is reserved), so the
    # test says the same thing on a machine with internet
    text = (ROOT / "src" / "mlfreeze" / "specs" / "models.toml").read_text()
    text = text.replace("https://huggingface.co/", "https://huggingface.invalid/")
    text = text.replace("https://github.com/", "https://github.invalid/")
    manifest = tmp_path / "models.toml"
    manifest.write_text(text)
    out = subprocess.run([sys.executable, "-m", "mlfreeze", "fetch", "--set", "default", "--manifest", str(manifest),
                          "--cache", str(tmp_path / "cache")], env=_env(), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 3
    err = out.stderr.strip().splitlines()[-1]
    assert err.startswith("mlfreeze fetch: error: model hosts unreachable (github.invalid, huggingface.invalid)")
    assert "--set demo" in err and "MLFREEZE_MODEL_MIRROR" in err
    assert "open_clip_model.safetensors" in err and "buffalo_l.zip" in err
    assert "Traceback" not in out.stderr
    assert not list((tmp_path / "cache" / "blobs").iterdir())


def test_cli_offline_lists_missing_with_sizes(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "models.toml", [
        {"file": "a.bin", "sha256": "a" * 64, "size": 123456, "urls": ["https://example.invalid/a.bin"]},
        {"file": "b.bin", "sha256": "b" * 64, "size": 7, "urls": ["https://example.invalid/b.bin"]},
    ])
    out = subprocess.run(_cmd(manifest, tmp_path / "cache"), env=_env(MLFREEZE_OFFLINE="1"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3
    assert "m/a.bin (123,456 bytes), m/b.bin (7 bytes)" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 2  # the header line and the one error line


def test_mirror_env_tried_first(server: FaultServer, tmp_path: Path) -> None:
    body = os.urandom(10_000)
    server.add("/mirror/w.bin", body)
    manifest = _manifest(tmp_path, "https://pinned.invalid/w.bin", body)
    out = subprocess.run(_cmd(manifest, tmp_path / "cache"), capture_output=True, text=True, timeout=60,
                         env=_env(MLFREEZE_MODEL_MIRROR=server.url("/mirror")))
    assert out.returncode == 0, out.stderr
    assert f"from {server.url('/mirror/w.bin')}" in out.stderr
    assert [r.path for r in server.log] == ["/mirror/w.bin"]


@pytest.mark.parametrize("junk", [b"", b"x" * 10])
def test_corrupt_cache_entry_is_replaced(server: FaultServer, tmp_path: Path, junk: bytes) -> None:
    body = os.urandom(50_000)
    manifest = _manifest(tmp_path, server.add("/w", body), body)
    cache = tmp_path / "cache"
    assert subprocess.run(_cmd(manifest, cache), env=_env(), capture_output=True, timeout=60).returncode == 0
    blob = cache / "blobs" / hashlib.sha256(body).hexdigest() / "w.bin"
    data = bytearray(blob.read_bytes())
    data[100:100 + len(junk) or 101] = junk or b"\0"
    blob.write_bytes(bytes(data))
    out = subprocess.run(_cmd(manifest, cache), env=_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "is corrupt" in out.stderr and "fetching again" in out.stderr
    assert blob.read_bytes() == body
    assert len(server.requests_for("/w")) == 2


def test_cli_drip_with_the_issue_settings_exits_3_bounded(server: FaultServer, tmp_path: Path) -> None:
    from fetch_servers import drip

    body = os.urandom(100_000)
    manifest = _manifest(tmp_path, server.add("/w", body), body)
    server.plan("/w", *[drip(rate=1)] * 5)
    env = _env(MLFREEZE_FETCH_READ_TIMEOUT="5", MLFREEZE_FETCH_URL_DEADLINE="4", MLFREEZE_FETCH_RETRIES="1")
    start = time.monotonic()
    out = subprocess.run(_cmd(manifest, tmp_path / "cache"), env=env, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - start
    assert out.returncode == 3, out.stderr
    assert took < 10  # the URL deadline holds inside the attempt (a drip never times out a read)
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("mlfreeze fetch: error: m/w.bin: no URL delivered the pinned bytes")
    assert "bytes this attempt in" in last and "B/s" in last and "MLFREEZE_FETCH_URL_DEADLINE 4s reached" in last
    assert not list((tmp_path / "cache" / "blobs").iterdir())


def test_cli_drip_under_the_rate_floor_from_env(server: FaultServer, tmp_path: Path) -> None:
    from fetch_servers import drip

    body = os.urandom(100_000)
    manifest = _manifest(tmp_path, server.add("/w", body), body)
    server.plan("/w", *[drip(rate=20)] * 5)
    env = _env(MLFREEZE_FETCH_MIN_RATE="500", MLFREEZE_FETCH_RATE_WINDOW="1")
    out = subprocess.run(_cmd(manifest, tmp_path / "cache"), env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stderr
    assert "under MLFREEZE_FETCH_MIN_RATE 500 B/s" in out.stderr
    assert len(server.requests_for("/w")) == 2


def test_cli_offline_demo_set_into_an_empty_cache(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mlfreeze", "fetch", "--set", "demo", "--cache",
                          str(tmp_path / "cache")], env=_env(MLFREEZE_OFFLINE="1"), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ok demo-clip:" in out.stdout and "ok demo-faces:" in out.stdout
    assert "(offline)" in out.stderr


def test_full_disk_exits_3_and_caches_nothing(server: FaultServer, tmp_path: Path) -> None:
    import resource

    body = os.urandom(1_000_000)
    manifest = _manifest(tmp_path, server.add("/w", body), body)

    def small_disk() -> None:  # every write past 200 kB fails (EFBIG), as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    out = subprocess.run(_cmd(manifest, tmp_path / "cache"), env=_env(), capture_output=True, text=True,
                         timeout=60, preexec_fn=small_disk)
    assert out.returncode == 3, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "cannot write to the cache" in last and "check free space" in last and "Traceback" not in out.stderr
    assert not list((tmp_path / "cache" / "blobs").iterdir())
    again = subprocess.run(_cmd(manifest, tmp_path / "cache"), env=_env(), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr  # room again: the fetch completes, resuming what was kept
    assert (tmp_path / "cache" / "blobs" / hashlib.sha256(body).hexdigest() / "w.bin").read_bytes() == body


def test_cli_self_signed_tls_exits_3_at_once_then_works_with_a_ca_bundle(tls_server: FaultServer,
                                                                         tmp_path: Path) -> None:
    body = os.urandom(50_000)
    manifest = _manifest(tmp_path, tls_server.add("/w", body), body)
    env = {k: v for k, v in _env().items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")}
    start = time.monotonic()
    out = subprocess.run(_cmd(manifest, tmp_path / "cache"), env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and time.monotonic() - start < 15
    last = out.stderr.strip().splitlines()[-1]
    assert "could not be verified" in last and "REQUESTS_CA_BUNDLE" in last and "SSL_CERT_FILE" in last
    assert "retry" not in out.stderr
    ok = subprocess.run(_cmd(manifest, tmp_path / "cache"), env={**env, "SSL_CERT_FILE": str(tls_server.cert_file)},
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("fault", ["gzip", "html", "loop", "wrong"])
def test_cli_hostile_answers_exit_3_and_cache_nothing(server: FaultServer, tmp_path: Path, fault: str) -> None:
    from fetch_servers import gzip_body, html_page, redirect, wrong_bytes

    body = os.urandom(200_000)
    url = server.add("/w", body)
    server.plan("/w", *[{"gzip": gzip_body, "html": html_page, "loop": redirect("/w"),
                         "wrong": wrong_bytes}[fault]] * 10)
    manifest = _manifest(tmp_path, url, body)
    out = subprocess.run(_cmd(manifest, tmp_path / "cache"), env=_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert {"gzip": "Content-Encoding: gzip", "html": "HTML page", "loop": "redirect loop",
            "wrong": "expected sha256"}[fault] in last
    assert "Traceback" not in out.stderr
    assert not list((tmp_path / "cache" / "blobs").iterdir())
