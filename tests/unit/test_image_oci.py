"""mlfreeze.release.oci: a layout other tools read (checked by hand against the OCI spec's rules),
with digests that depend only on the content, never on mtimes, owners or walk order."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from mlfreeze.release import oci


def _tree(root: Path, mtime: int) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "app").write_bytes(b"\x7fELF pretend")
    (root / "bin" / "app").chmod(0o775)
    (root / "models").mkdir()
    (root / "models" / "w.onnx").write_bytes(b"weights" * 100)
    (root / "models" / "w.onnx").chmod(0o600)
    (root / "link").symlink_to("bin/app")
    for p in [root, *root.rglob("*")]:
        os.utime(p, (mtime, mtime), follow_symlinks=False)
    return root


def _members(layout: Path, layer: oci.Layer) -> list[tarfile.TarInfo]:
    blob = layout / "blobs" / "sha256" / layer.descriptor.digest.split(":")[1]
    with tarfile.open(blob, "r:gz") as tar:
        return tar.getmembers()


def test_a_layer_is_the_same_bytes_whatever_the_mtimes_and_its_digests_are_right(tmp_path: Path) -> None:
    a = oci.Layout(tmp_path / "a").add_layer(oci.tree_entries(_tree(tmp_path / "t1", 1_000_000), "opt/x"),
                                             mtime=1767225600, comment="x")
    b = oci.Layout(tmp_path / "b").add_layer(oci.tree_entries(_tree(tmp_path / "t2", 2_000_000), "opt/x"),
                                             mtime=1767225600, comment="x")
    assert a.descriptor.digest == b.descriptor.digest and a.diff_id == b.diff_id
    blob = (tmp_path / "a" / "blobs" / "sha256" / a.descriptor.digest.split(":")[1]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == a.descriptor.digest.split(":")[1] and len(blob) == a.descriptor.size
    assert blob[4:8] == b"\x00\x00\x00\x00"  # gzip header mtime 0
    plain = gzip.decompress(blob)
    assert f"sha256:{hashlib.sha256(plain).hexdigest()}" == a.diff_id and len(plain) == a.tar_size
    c = oci.Layout(tmp_path / "c").add_layer(oci.tree_entries(tmp_path / "t1", "opt/x"), mtime=1767225601, comment="x")
    assert c.descriptor.digest != a.descriptor.digest  # the epoch is an input


def test_layer_entries_sorted_owned_by_root_and_readable(tmp_path: Path) -> None:
    layer = oci.Layout(tmp_path / "l").add_layer(oci.tree_entries(_tree(tmp_path / "t", 5), "opt/x"),
                                                 mtime=1767225600, comment="x")
    members = _members(tmp_path / "l", layer)
    names = [m.name for m in members]
    assert names == ["opt", "opt/x", "opt/x/bin", "opt/x/bin/app", "opt/x/link", "opt/x/models",
                     "opt/x/models/w.onnx"]
    by = {m.name: m for m in members}
    assert all((m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 1767225600) for m in members)
    assert by["opt/x/bin/app"].mode == 0o755  # group write dropped, exec kept
    assert by["opt/x/models/w.onnx"].mode == 0o644  # readable by the app's non-root user
    assert by["opt/x/link"].issym() and by["opt/x/link"].linkname == "bin/app"


def test_exclude_and_only_split_a_bundle_into_app_and_models_layers(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t", 5)
    layout = oci.Layout(tmp_path / "l")
    app = layout.add_layer(oci.tree_entries(tree, "opt/x", exclude=["models"]), mtime=0, comment="app")
    models = layout.add_layer(oci.tree_entries(tree, "opt/x", only="models"), mtime=0, comment="models")
    assert not any("models" in m.name for m in _members(tmp_path / "l", app))
    assert [m.name for m in _members(tmp_path / "l", models)] == ["opt", "opt/x", "opt/x/models",
                                                                  "opt/x/models/w.onnx"]


def test_index_and_layout_files_and_prune(tmp_path: Path) -> None:
    layout = oci.Layout(tmp_path)
    stray = layout.add_blob(b"left over", "application/octet-stream")
    config = layout.add_json({"b": 1, "a": [1, 2]}, oci.MEDIA_CONFIG)
    assert (tmp_path / "blobs" / "sha256" / config.digest.split(":")[1]).read_bytes() == b'{"a":[1,2],"b":1}'
    layout.write_index(config, ref_name="1.0-linux-cpu-slim", platform={"architecture": "amd64", "os": "linux"})
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["manifests"][0]["digest"] == config.digest
    assert index["manifests"][0]["annotations"] == {oci.REF_NAME: "1.0-linux-cpu-slim"}
    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    layout.prune([config.digest])
    assert not (tmp_path / "blobs" / "sha256" / stray.digest.split(":")[1]).exists()


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../../b", "./a"])
def test_paths_that_escape_or_are_not_normal_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="must be relative"):
        oci.Layout(tmp_path).add_layer([oci.Entry(path=bad, kind="file", data=b"")], mtime=0, comment="x")


def test_a_path_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="appears twice"):
        oci.Layout(tmp_path).add_layer([oci.Entry(path="a", kind="dir"), oci.Entry(path="a", kind="dir")],
                                       mtime=0, comment="x")


def test_a_root_fs_tar_loses_its_devices_and_hard_links_become_files(tmp_path: Path) -> None:
    src = tmp_path / "base.tar"
    with tarfile.open(src, "w") as tar:
        for name, kind in (("./", tarfile.DIRTYPE), ("./dev/", tarfile.DIRTYPE), ("./dev/null", tarfile.CHRTYPE),
                           ("./tmp/", tarfile.DIRTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = kind, 0o1777 if name == "./tmp/" else 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("./lib/libc.so.6")
        info.size, info.uid, info.uname = 4, 1000, "builder"
        tar.addfile(info, io.BytesIO(b"libc"))
        link = tarfile.TarInfo("./lib/libc-copy.so.6")
        link.type, link.linkname = tarfile.LNKTYPE, "./lib/libc.so.6"
        tar.addfile(link)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    entries = {e.path: e for e in oci.tar_entries(src, scratch)}
    assert "dev/null" not in entries and entries["dev"].kind == "dir"
    assert entries["lib/libc-copy.so.6"].kind == "file" and entries["lib/libc-copy.so.6"].source.read_bytes() == b"libc"
    layer = oci.Layout(tmp_path / "l").add_layer(entries.values(), mtime=9, comment="base")
    members = {m.name: m for m in _members(tmp_path / "l", layer)}
    assert members["tmp"].mode == 0o1777 and members["lib/libc.so.6"].uid == 0
