"""Reproducible tar.gz/zip archives and splitting (src/mlfreeze/release/archives.py)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from mlfreeze.release import archives

EPOCH = 1767225600


def _tree(root: Path) -> Path:
    (root / "_internal" / "sub").mkdir(parents=True)
    (root / "app").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "app").chmod(0o700)
    (root / "_internal" / "lib.so").write_bytes(b"\x7fELF" + bytes(5000))
    (root / "_internal" / "lib.so").chmod(0o600)
    (root / "_internal" / "sub" / "data.txt").write_text("data\n")
    (root / "tool.exe").write_bytes(b"MZ")
    (root / "tool.exe").chmod(0o644)
    os.symlink("lib.so", root / "_internal" / "lib.so.1")
    return root


def _touch_everything(root: Path, when: int) -> None:
    for p in [root, *root.rglob("*")]:
        os.utime(p, (when, when), follow_symlinks=False)


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_same_tree_gives_the_same_bytes_whatever_the_mtimes_and_modes(tmp_path: Path, fmt: str) -> None:
    a = _tree(tmp_path / "a" / "bundle")
    b = _tree(tmp_path / "b" / "bundle")
    _touch_everything(a, 1_000_000_000)
    _touch_everything(b, 1_700_000_000)
    (b / "app").chmod(0o755)  # a different x-bit pattern still means "executable"
    (b / "_internal" / "lib.so").chmod(0o664)
    ra = archives.write_archive(a, tmp_path / f"a.{fmt}", fmt=fmt, arcroot="bundle", mtime=EPOCH)
    rb = archives.write_archive(b, tmp_path / f"b.{fmt}", fmt=fmt, arcroot="bundle", mtime=EPOCH)
    assert (tmp_path / f"a.{fmt}").read_bytes() == (tmp_path / f"b.{fmt}").read_bytes()
    assert ra.sha256 == rb.sha256 == hashlib.sha256((tmp_path / f"a.{fmt}").read_bytes()).hexdigest()
    assert ra.size == (tmp_path / f"a.{fmt}").stat().st_size
    assert ra.content_bytes == len(b"#!/bin/sh\necho hi\n") + 5004 + 5 + 2


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_content_and_epoch_change_the_bytes(tmp_path: Path, fmt: str) -> None:
    root = _tree(tmp_path / "bundle")
    one = archives.write_archive(root, tmp_path / f"1.{fmt}", fmt=fmt, arcroot="bundle", mtime=EPOCH)
    later = archives.write_archive(root, tmp_path / f"2.{fmt}", fmt=fmt, arcroot="bundle", mtime=EPOCH + 86400)
    (root / "_internal" / "sub" / "data.txt").write_text("Data\n")
    edited = archives.write_archive(root, tmp_path / f"3.{fmt}", fmt=fmt, arcroot="bundle", mtime=EPOCH)
    assert len({one.sha256, later.sha256, edited.sha256}) == 3


def test_tar_members_are_sorted_owned_by_root_with_fixed_modes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bundle")
    archives.write_tar_gz(root, tmp_path / "b.tar.gz", arcroot="bundle", mtime=EPOCH)
    raw = (tmp_path / "b.tar.gz").read_bytes()
    assert raw[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no FNAME flag, mtime 0, OS unknown
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert names[0] == "bundle"
        by_name = {m.name: m for m in members}
        assert all(m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == "" for m in members)
        assert all(m.mtime == EPOCH for m in members)
        assert by_name["bundle/app"].mode == 0o755
        assert by_name["bundle/tool.exe"].mode == 0o755
        assert by_name["bundle/_internal/lib.so"].mode == 0o644
        assert by_name["bundle/_internal/sub"].isdir() and by_name["bundle/_internal/sub"].mode == 0o755
        link = by_name["bundle/_internal/lib.so.1"]
        assert link.issym() and link.linkname == "lib.so"
        extracted = tar.extractfile("bundle/_internal/sub/data.txt")
        assert extracted is not None and extracted.read() == b"data\n"


def test_zip_entries_have_fixed_dates_and_unix_modes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bundle")
    archives.write_zip(root, tmp_path / "b.zip", arcroot="bundle", mtime=EPOCH)
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        infos = {i.filename: i for i in zf.infolist()}
        assert list(infos) == sorted(infos, key=lambda n: n.rstrip("/"))
        assert all(i.date_time == (2026, 1, 1, 0, 0, 0) for i in infos.values())
        assert all(i.create_system == 3 for i in infos.values())
        mode = {name: i.external_attr >> 16 for name, i in infos.items()}
        assert mode["bundle/app"] == stat.S_IFREG | 0o755
        assert mode["bundle/tool.exe"] == stat.S_IFREG | 0o755
        assert mode["bundle/_internal/lib.so"] == stat.S_IFREG | 0o644
        assert mode["bundle/_internal/"] == stat.S_IFDIR | 0o755
        assert mode["bundle/_internal/lib.so.1"] == stat.S_IFLNK | 0o777
        assert zf.read("bundle/_internal/lib.so.1") == b"lib.so"
        assert zf.read("bundle/_internal/lib.so") == b"\x7fELF" + bytes(5000)
        assert zf.testzip() is None


def test_zip_clamps_dates_before_1980(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bundle")
    archives.write_zip(root, tmp_path / "b.zip", arcroot="bundle", mtime=0)
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_walk_refuses_a_fifo(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bundle")
    os.mkfifo(root / "pipe")
    with pytest.raises(ValueError, match="pipe"):
        archives.walk(root, "bundle")


def test_split_gives_ordered_parts_that_rejoin_to_the_whole(tmp_path: Path) -> None:
    data = hashlib.sha256(b"x").digest() * 1000  # 32,000 bytes
    whole = tmp_path / "a.tar.gz"
    whole.write_bytes(data)
    parts = archives.split_file(whole, 10_000)
    assert [p.path.name for p in parts] == [f"a.tar.gz.part00{i}" for i in (1, 2, 3, 4)]
    assert [p.size for p in parts] == [10_000, 10_000, 10_000, 2_000]
    assert not whole.exists()
    joined = io.BytesIO()
    for p in parts:
        chunk = p.path.read_bytes()
        assert hashlib.sha256(chunk).hexdigest() == p.sha256
        joined.write(chunk)
    assert joined.getvalue() == data


def test_split_exact_multiple_and_below_limit(tmp_path: Path) -> None:
    exact = tmp_path / "e.zip"
    exact.write_bytes(b"a" * 20)
    assert [p.size for p in archives.split_file(exact, 10)] == [10, 10]
    small = tmp_path / "s.zip"
    small.write_bytes(b"a" * 10)
    assert archives.split_file(small, 10) == []
    assert small.read_bytes() == b"a" * 10
    with pytest.raises(ValueError):
        archives.split_file(small, 0)


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_compression_level_is_honoured(tmp_path: Path, fmt: str) -> None:
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "text.txt").write_bytes(b"".join(b"line %d of a fairly repetitive log\n" % (i % 977) for i in range(20000)))
    write = archives.write_tar_gz if fmt == "tar.gz" else archives.write_zip
    stored = write(root, tmp_path / f"0.{fmt}", arcroot="b", mtime=EPOCH, level=0)
    squeezed = write(root, tmp_path / f"6.{fmt}", arcroot="b", mtime=EPOCH, level=6)
    assert stored.size > stored.content_bytes > 10 * squeezed.size


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside", "../../bundle-other/x"])
def test_symlinks_out_of_the_bundle_are_refused(tmp_path: Path, target: str) -> None:
    root = _tree(tmp_path / "bundle")
    os.symlink(target, root / "_internal" / "escape")
    with pytest.raises(ValueError, match="points outside the bundle"):
        archives.walk(root, "bundle")


def test_symlink_to_a_parent_folder_inside_is_kept(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bundle")
    os.symlink("../app", root / "_internal" / "sub" / "app-link")
    entries = {e.arcname: e for e in archives.walk(root, "bundle")}
    assert entries["bundle/_internal/sub/app-link"].target == "../app"
