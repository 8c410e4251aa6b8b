"""The install root without starting processes: pointers, staging from a release directory,
audits, leftovers after a kill, history, keep-N and rollback (on hand-made bundles)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from release_bundles import make_bundle

from mlfreeze_runtime import record
from mlfreeze_runtime.update import cli, http, index, install, pointer
from mlfreeze_runtime.update.errors import FetchError, UsageError, VerificationFailed


def release_dir(tmp: Path, *bundles: Path) -> Path:
    """A release directory as publish lays it out, unsigned (blobs + index.json)."""
    out = tmp / "release"
    entries = []
    for b in bundles:
        entries.append(index.variant_entry(b, os_name="linux", arch="x86_64", accelerator="cpu", min_driver=None,
                                           cuda_archs=[]))
        for rel, sha, _size, _mode in entries[-1]["files"]:
            dest = out / index.blob_path(sha)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes((b / rel).read_bytes())
    (out / "index.json").write_bytes(index.render("photo-search", "x", entries))
    return out


def put_version(root: Path, rel: Path, name: str, **kw: object) -> dict:
    """Stage a bundle from ``rel`` and rename it into versions/ (the part of install_entry before checks)."""
    doc = index.parse((rel / "index.json").read_bytes(), "index.json")
    entry = next(e for e in doc["variants"] if e["name"] == name)
    out = install.Outcome(name=name, previous=None)
    staging = install.stage(root, str(rel), entry, out)
    install.audit(staging, record_sha256=entry["record_sha256"], full=True)
    (root / "versions").mkdir(exist_ok=True)
    os.rename(staging, root / "versions" / name)
    return {"entry": entry, "outcome": out}


@pytest.fixture
def two(tmp_path: Path) -> dict:
    b1 = make_bundle(tmp_path / "d1", seed=b"v1", payload=200_000)
    b2 = make_bundle(tmp_path / "d2", seed=b"v2", payload=200_000, version="0.2.0")
    b2 = b2.rename(b2.with_name("photo-search-0.2.0-linux-cpu-lite"))
    # v2 shares v1's libraries: only the launcher differs (an app-only update)
    (b2 / "_internal" / "libpayload.so").write_bytes((b1 / "_internal" / "libpayload.so").read_bytes())
    from release_bundles import seal
    seal(b2, "linux-cpu", "lite", version="0.2.0")
    return {"rel": release_dir(tmp_path, b1, b2), "root": tmp_path / "root", "b1": b1, "b2": b2}


def test_pointer_text_is_one_existing_version_name() -> None:
    assert pointer.resolve_pointer_text("app-1.0-win-cpu-lite\r\n", {"app-1.0-win-cpu-lite"}) == "app-1.0-win-cpu-lite"
    for bad in ("", "..", "a/b", "a\\b", "a\nb", "missing"):
        with pytest.raises(pointer.PointerError):
            pointer.resolve_pointer_text(bad, {"present"})


@pytest.mark.parametrize("kind", [pointer.SymlinkPointer, pointer.FilePointer])
def test_pointer_switch_replaces_in_one_step(tmp_path: Path, kind: type) -> None:
    for n in ("a", "b"):
        (tmp_path / "versions" / n).mkdir(parents=True)
    p = kind(tmp_path)
    assert p.read() is None
    p.switch("a")
    p.switch("b")
    assert p.read() == "b" and not p.leftovers()
    assert pointer.for_root(tmp_path).kind == p.kind


def test_windows_roots_use_the_pointer_file(tmp_path: Path) -> None:
    assert pointer.for_root(tmp_path, "windows").kind == "file"
    assert pointer.for_root(tmp_path, "posix").kind == "symlink"


def test_an_update_links_unchanged_files_and_fetches_the_rest(two: dict) -> None:
    root = two["root"]
    first = put_version(root, two["rel"], "photo-search-0.1.0-linux-cpu-lite")
    assert first["outcome"].reused_files == 0
    pointer.for_root(root).switch("photo-search-0.1.0-linux-cpu-lite")
    second = put_version(root, two["rel"], "photo-search-0.2.0-linux-cpu-lite")
    assert second["outcome"].reused_files >= 3 and second["outcome"].fetched_files == 3  # launcher, RECORD, BUILD-INFO
    assert second["outcome"].downloaded_bytes < 2000
    lib = "_internal/libpayload.so"
    v1, v2 = (root / "versions" / n / lib for n in ("photo-search-0.1.0-linux-cpu-lite",
                                                    "photo-search-0.2.0-linux-cpu-lite"))
    assert v1.stat().st_ino == v2.stat().st_ino


def test_a_blob_with_other_bytes_is_refused_and_staging_removed(two: dict) -> None:
    doc = index.parse((two["rel"] / "index.json").read_bytes(), "index.json")
    entry = doc["variants"][0]
    sha = next(r[1] for r in entry["files"] if r[0] == "_internal/libpayload.so")
    blob = two["rel"] / index.blob_path(sha)
    blob.write_bytes(b"\0" + blob.read_bytes()[1:])
    with pytest.raises(FetchError, match="damaged or tampered"):
        install.stage(two["root"], str(two["rel"]), entry, install.Outcome(name="x", previous=None))
    assert not list((two["root"] / ".staging").iterdir())


def test_audit_refuses_a_record_other_than_the_signed_one(two: dict) -> None:
    with pytest.raises(VerificationFailed, match="not the one the release signed"):
        install.audit(two["b1"], record_sha256="0" * 64, full=True)
    (two["b1"] / "_internal" / "base_library.zip").write_bytes(b"changed")
    with pytest.raises(VerificationFailed, match="audit against RECORD failed"):
        install.audit(two["b1"], record_sha256=None, full=True)


def test_leftovers_of_a_killed_run_are_cleaned(two: dict) -> None:
    root = two["root"]
    put_version(root, two["rel"], "photo-search-0.1.0-linux-cpu-lite")
    install.switch(root, "photo-search-0.1.0-linux-cpu-lite")
    (root / ".staging" / "photo-search-0.2.0-linux-cpu-lite.999" / "_internal").mkdir(parents=True)
    os.symlink("versions/x", root / ".current.999.tmp")
    (root / ".state.json.999.tmp").write_text("{")
    removed = install.clean_leftovers(root)
    assert sorted(removed) == [".current.999.tmp", ".staging/photo-search-0.2.0-linux-cpu-lite.999",
                               ".state.json.999.tmp"]
    assert install.installed(root) == ["photo-search-0.1.0-linux-cpu-lite"]


def test_history_follows_the_pointer_after_a_kill_before_state_was_written(two: dict) -> None:
    root = two["root"]
    for name in ("photo-search-0.1.0-linux-cpu-lite", "photo-search-0.2.0-linux-cpu-lite"):
        put_version(root, two["rel"], name)
    install.switch(root, "photo-search-0.1.0-linux-cpu-lite")
    install.write_state(root, {"history": ["photo-search-0.1.0-linux-cpu-lite"]})
    install.switch(root, "photo-search-0.2.0-linux-cpu-lite")  # killed before state.json was updated
    assert install.history(root) == ["photo-search-0.1.0-linux-cpu-lite", "photo-search-0.2.0-linux-cpu-lite"]
    assert install.rollback(root) == ("photo-search-0.2.0-linux-cpu-lite", "photo-search-0.1.0-linux-cpu-lite")
    assert pointer.for_root(root).read() == "photo-search-0.1.0-linux-cpu-lite"
    with pytest.raises(UsageError, match="no previous version"):
        install.rollback(root)


def test_prune_keeps_current_and_n_previous(two: dict, tmp_path: Path) -> None:
    root = two["root"]
    names = ["photo-search-0.1.0-linux-cpu-lite", "photo-search-0.2.0-linux-cpu-lite"]
    for name in names:
        put_version(root, two["rel"], name)
    for extra in ("old-a", "old-b"):
        (root / "versions" / extra).mkdir()
        (root / "versions" / extra / record.RECORD_NAME).write_text("")
    install.write_state(root, {"history": ["old-a", "old-b"] + names})
    install.switch(root, names[1])
    assert install.prune(root, keep=1) == ["old-a", "old-b"]
    assert install.installed(root) == names
    assert install.prune(root, keep=0) == [names[0]]


def test_index_paths_that_escape_are_refused() -> None:
    doc = {"format": index.FORMAT, "schema_version": 1, "app": "x", "version": "1",
           "variants": [{"name": "x", "app": "x", "version": "1", "platform": "p", "flavor": "lite", "os": "linux",
                         "arch": "x86_64", "accelerator": "cpu", "record_sha256": "0" * 64,
                         "files": [["../evil", "0" * 64, 1, 420]]}]}
    with pytest.raises(FetchError, match="escapes"):
        index.parse(json.dumps(doc).encode(), "index.json")
    with pytest.raises(FetchError, match="not an mlfreeze update index"):
        index.parse(b"{}", "index.json")


def test_plain_http_is_only_for_loopback() -> None:
    http.check_url("http://127.0.0.1:8000/r/")
    http.check_url("https://example.org/r/")
    with pytest.raises(UsageError, match="loopback"):
        http.check_url("http://example.org/r/")


def test_default_root_is_the_install_running_the_updater(tmp_path: Path) -> None:
    exe = tmp_path / "versions" / "app-1.0-linux-cpu-lite" / "app-update"
    assert cli.default_root(exe) == tmp_path
    assert cli.default_root(tmp_path / "bin" / "app-update").name == "app"


def test_health_json_is_read_indented_or_on_its_last_line() -> None:
    from mlfreeze_runtime.update.install import health_document

    assert health_document('{\n  "app": "photo-search",\n  "ml_available": false\n}\n') == {
        "app": "photo-search", "ml_available": False}
    assert health_document('starting\n{"app": "tiny"}\n') == {"app": "tiny"}
    assert health_document("ok\n") is None
    assert health_document("[1, 2]\n") is None
    assert health_document("") is None
