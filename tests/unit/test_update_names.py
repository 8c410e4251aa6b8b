"""The name grammar of the updater: every name signed metadata turns into a path component, every
blob id and every path, refused when the index or a model pack is read (one line, exit 3)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from mlfreeze_runtime.update import index, models, names
from mlfreeze_runtime.update.errors import FetchError

SHA = "a" * 64


def _entry(**changes: object) -> dict:
    e = {"name": "tiny-0.0.2-linux-cpu-lite", "app": "tiny", "version": "0.0.2", "platform": "linux-cpu",
         "flavor": "lite", "os": "linux", "arch": "x86_64", "accelerator": "cpu", "min_driver": None,
         "cuda_archs": [], "record_sha256": "b" * 64,
         "files": [["tiny", SHA, 10, 0o755], ["_internal/lib.so", "c" * 64, 3, 0o644]]}
    e.update(changes)
    return e


def _index(entry: dict, **top: object) -> bytes:
    doc = {"format": index.FORMAT, "schema_version": 1, "app": "tiny", "version": "0.0.2", "variants": [entry]}
    doc.update(top)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("name", ["tiny-0.0.2-linux-cpu-lite", "a", "v1.2.3+local", "x_y", "A9.b-c"])
def test_good_names_pass(name: str) -> None:
    assert names.check_name(name, "variant", "i") == name


@pytest.mark.parametrize("name", ["", ".", "..", "../../evil-variant", "/abs", "a/b", "a\\b", "a\x00b", "a\nb",
                                  "C:evil", "con", "NUL.txt", "trailing.", " lead", "-lead", "x" * 129, 7, None,
                                  ["a"]])
def test_bad_names_are_refused_in_one_line(name: object) -> None:
    with pytest.raises(FetchError) as exc:
        names.check_name(name, "variant", "index.json")
    assert "\n" not in exc.value.message.replace(repr(name), "") and exc.value.exit_code == 3


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", "a\\..\\x", "a\x00", "C:/x", "", "a//b",
                                  "./a", "a/.", "a\nb"])
def test_bad_paths_are_refused(path: str) -> None:
    assert names.relpath_problem(path) is not None
    with pytest.raises(FetchError, match="escapes the install or is not a plain relative path"):
        index.parse(_index(_entry(files=[[path, SHA, 1, 0o644]])), "index.json")


@pytest.mark.parametrize(("changes", "match"), [
    ({"name": "../../evil-variant"}, "variant '../../evil-variant': name"),
    ({"name": "/tmp/evil"}, "is not a safe name"),
    ({"version": "1/../../x"}, "version"),
    ({"app": "../../bin/sh"}, "app"),
    ({"platform": "a\x00b"}, "platform"),
    ({"flavor": "../full"}, "flavor"),
    ({"record_sha256": "../x"}, "record_sha256"),
    ({"files": [["tiny", "../../../etc/passwd", 1, 0o644]]}, "is not a sha256"),
    ({"files": [["tiny", SHA.upper(), 1, 0o644]]}, "is not a sha256"),
    ({"files": [["tiny", SHA, 1, 0o4755]]}, "0o644/0o755"),
    ({"files": [["tiny", SHA, -1, 0o644]]}, "byte count"),
    ({"files": [["tiny", SHA, True, 0o644]]}, "byte count"),
    ({"files": [["tiny", SHA, 1]]}, "is not \\[path, sha256, size, mode\\]"),
    ({"files": [["a", SHA, 1, 0o644], ["A", SHA, 1, 0o644]]}, "listed twice"),
    ({"files": [["a", SHA, 1, 0o644], ["a/b", SHA, 1, 0o644]]}, "both a file and a folder"),
    ({"files": []}, "no file list"),
    ({"min_driver": "$(reboot)"}, "min_driver"),
    ({"cuda_archs": ["sm_80", "../x"]}, "cuda_archs"),
    ({"links": [["_internal/leak.txt", "/outside/secret"]]}, "is absolute"),
    ({"links": [["_internal/leak.txt", "../../outside"]]}, "points outside the bundle"),
    ({"links": [["leak", ".."]]}, "points outside the bundle"),
    ({"links": [["_internal", "x"]]}, "is also a folder of listed files"),
    ({"links": [["l", "a\\..\\..\\x"]]}, "not a plain relative POSIX path"),
])
def test_a_hostile_variant_is_refused_before_anything_is_written(changes: dict, match: str) -> None:
    with pytest.raises(FetchError, match=match):
        index.parse(_index(_entry(**changes)), "index.json")


def test_the_release_name_and_app_are_checked_and_variants_are_objects() -> None:
    assert index.parse(_index(_entry()), "i")["variants"][0]["name"] == "tiny-0.0.2-linux-cpu-lite"
    with pytest.raises(FetchError, match="release version"):
        index.parse(_index(_entry(), version="../1"), "i")
    with pytest.raises(FetchError, match="not a list"):
        index.parse(_index(_entry(), variants={"a": 1}), "i")
    with pytest.raises(FetchError, match="not an object"):
        index.parse(json.dumps({"format": index.FORMAT, "schema_version": 1, "app": "a", "version": "1",
                                "variants": ["x"]}).encode(), "i")
    two = json.loads(_index(_entry()))
    two["variants"].append(copy.deepcopy(two["variants"][0]))
    with pytest.raises(FetchError, match="share a name"):
        index.parse(json.dumps(two).encode(), "i")


def test_links_inside_the_bundle_are_allowed() -> None:
    ok = _entry(links=[["_internal/libfoo.so", "lib.so"], ["bin", "_internal"], ["_internal/sub/x", "../lib.so"]])
    assert index.links_of(index.parse(_index(ok), "i")["variants"][0]) == {
        "_internal/libfoo.so": "lib.so", "bin": "_internal", "_internal/sub/x": "../lib.so"}


@pytest.mark.parametrize(("field", "value"), [("set", "../../x"), ("version", "a/b"), ("app", "")])
def test_model_pack_names_are_checked(field: str, value: str) -> None:
    doc = {"format": models.FORMAT, "schema_version": 1, "app": "tiny", "set": "demo", "version": "2",
           "files": [["models.json", SHA, 3]]}
    assert models.parse_pack(json.dumps(doc).encode(), "p")["set"] == "demo"
    doc[field] = value
    with pytest.raises(FetchError, match=f"model pack {field}"):
        models.parse_pack(json.dumps(doc).encode(), "p")
    doc[field] = "ok"
    doc["files"] = [["models.json", SHA, 3], ["../x", SHA, 1]]
    with pytest.raises(FetchError, match="escapes"):
        models.parse_pack(json.dumps(doc).encode(), "p")


def test_inside_follows_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "versions").mkdir(parents=True)
    assert names.inside(root, root / "versions" / "a") == root / "versions" / "a"
    os.symlink(tmp_path, root / "versions" / "out")
    with pytest.raises(FetchError, match="outside"):
        names.inside(root, root / "versions" / "out" / "x")
    with pytest.raises(FetchError, match="outside"):
        names.inside(root, root / ".." / "x")
