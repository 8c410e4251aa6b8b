"""RECORD (src/mlfreeze_runtime/record.py): the wheel RECORD format, what it covers, and the quick and full checks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mlfreeze_runtime import record

# sha256(b"hello\n") and sha256(b"x") as urlsafe base64 without padding, computed outside Python with
# `openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '='`
HELLO = "WJG1tSLV3whtD_CxEPvZ0hu0_HFjrzTQgoai6Eb2vgM"
X = "LXEWQrcmsEQBYnyp-6wy9chTD7GQPMTbAiWHF5IaSIE"


def _bundle(root: Path) -> Path:
    (root / "_internal" / "sub").mkdir(parents=True)
    (root / "app").write_bytes(b"hello\n")
    (root / "_internal" / "sub" / "a,b.txt").write_bytes(b"x")  # a comma: the csv module quotes the path
    (root / "BUILD-INFO.json").write_text("{}")
    (root / ".mlfreeze-stamp").write_text("{}")
    (root / "_internal" / "BUILD-INFO.json").write_text("{}")  # only the root's is left out
    return root


def test_known_answer_lines_sorted_posix_and_quoted(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "b")
    path, digest = record.write(bundle)
    text = path.read_bytes()
    assert text.decode() == ("_internal/BUILD-INFO.json,sha256=RBNvo1WzZ4oRRq0W9-hknpT7T8If536DEMBg9hyq_4o,2\n"
                             f'"_internal/sub/a,b.txt",sha256={X},1\n'
                             f"app,sha256={HELLO},6\n")
    assert digest == hashlib.sha256(text).hexdigest() == record.digest_of(bundle)


def test_parse_round_trips_and_refuses_malformed_rows(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "b")
    record.write(bundle)
    entries = record.read(bundle)
    assert entries["app"] == record.Entry(path="app", sha256=hashlib.sha256(b"hello\n").hexdigest(), size=6)
    assert record.render(list(entries.values())) == (bundle / "RECORD").read_text()
    for bad, says in [("app,md5=abc,6\n", "not sha256"), ("app,sha256=abc,6\n", "bad sha256 length"),
                      (f"app,sha256={HELLO}\n", "2 fields"), (f"app,sha256={HELLO},six\n", "size"),
                      (f"../x,sha256={HELLO},6\n", "escapes"), (f"/x,sha256={HELLO},6\n", "absolute"),
                      (f"app,sha256={HELLO},6\napp,sha256={HELLO},6\n", "repeats")]:
        with pytest.raises(record.RecordError, match=says):
            record.parse(bad)
    (bundle / "RECORD").unlink()
    with pytest.raises(record.RecordError, match="missing"):
        record.read(bundle)


def test_verify_finds_differ_missing_extra(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "b")
    record.write(bundle)
    assert record.verify(bundle, full=True) == [] and record.verify(bundle, full=False) == []
    (bundle / "app").write_bytes(b"hello")  # truncated
    (bundle / "_internal" / "sub" / "a,b.txt").unlink()
    (bundle / "_internal" / "new.so").write_bytes(b"new")
    (bundle / "BUILD-INFO.json").write_text('{"edited": true}')  # outside RECORD: not a finding here
    found = {(f.path, f.kind) for f in record.verify(bundle, full=False)}
    assert found == {("app", "differ"), ("_internal/sub/a,b.txt", "missing"), ("_internal/new.so", "extra")}


def test_quick_check_trusts_size_and_old_mtime_full_check_does_not(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "b")
    record.write(bundle)
    app = bundle / "app"
    st = app.stat()
    app.write_bytes(b"HELLO\n")  # same size
    os.utime(app, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert record.verify(bundle, full=False) == []
    hashes: dict[str, str] = {}
    found = record.verify(bundle, full=True, hashes=hashes)
    assert [(f.path, f.kind) for f in found] == [("app", "differ")]
    assert hashes["app"] == hashlib.sha256(b"HELLO\n").hexdigest() and len(hashes) == 3
    os.utime(app, ns=(st.st_atime_ns, (bundle / "RECORD").stat().st_mtime_ns + 10**9))
    assert [(f.path, f.kind) for f in record.verify(bundle, full=False)] == [("app", "differ")]


def test_links_inside_are_recorded_through_the_link_and_links_out_are_refused(tmp_path: Path) -> None:
    b = _bundle(tmp_path / "b")
    (b / "_internal" / "libx.so.1").symlink_to("sub/a,b.txt")  # inside: recorded by the target's bytes
    (b / "lib").symlink_to("_internal")  # a folder link: not a row, listed by links()
    record.write(b)
    rows = record.read(b)
    assert rows["_internal/libx.so.1"].sha256 == rows["_internal/sub/a,b.txt"].sha256 and "lib" not in rows
    assert record.links(b) == [("_internal/libx.so.1", "sub/a,b.txt"), ("lib", "_internal")]
    assert record.verify(b, full=True) == []
    secret = tmp_path / "secret"
    secret.write_bytes(b"outside")
    for name, target in (("leak.txt", str(secret)), ("rel-leak", "../../secret"), ("dangling", "nope"),
                         ("dir-leak", "..")):
        link = b / "_internal" / name
        link.symlink_to(target)
        with pytest.raises(record.RecordError, match=f"{name}: symlink to .* (outside the bundle|dangles)"):
            record.write(b)
        with pytest.raises(record.RecordError, match="symlink"):
            record.links(b)
        found = record.verify(b, full=True)
        assert [(f.kind, f.path) for f in found] == [("link", f"_internal/{name}")], found
        link.unlink()
    assert record.verify(b, full=True) == []
