"""The freeze-input hash: every input moves it, nothing else does; the stamp round-trips."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from release_bundles import make_bundle

from mlfreeze.bundle.incremental import (
    PART_CHANGES,
    FreezeInputs,
    import_change,
    installed_distributions,
    is_fresh,
    read_stamp,
    relink,
    source_files,
    stale_reason,
    stamped_app_files,
    update_refusal,
    write_stamp,
)


def _inputs(**kw: object) -> FreezeInputs:
    base = FreezeInputs(platform="linux-cuda", flavor="full", app="photo-search",
                        distributions={"torch": "2.14.1", "numpy": "2.4.6"}, models={"m/a.bin": "ab" * 32},
                        sources={"app.py": "cd" * 32}, params={"excludes": ["tkinter"]})
    return replace(base, **kw)  # type: ignore[arg-type]


def test_every_input_changes_the_digest() -> None:
    base = _inputs().digest()
    variants = [
        _inputs(platform="linux-cpu"), _inputs(flavor="lite"), _inputs(app="other"),
        _inputs(distributions={"torch": "2.14.2", "numpy": "2.4.6"}),
        _inputs(distributions={"torch": "2.14.1"}),
        _inputs(models={"m/a.bin": "ef" * 32}), _inputs(sources={"app.py": "00" * 32}),
        _inputs(params={"excludes": ["tkinter", "numpy"]}),
    ]
    digests = {v.digest() for v in variants}
    assert base not in digests and len(digests) == len(variants)


def test_digest_ignores_dict_order() -> None:
    a = _inputs(distributions={"torch": "2.14.1", "numpy": "2.4.6"})
    b = _inputs(distributions={"numpy": "2.4.6", "torch": "2.14.1"})
    assert a.digest() == b.digest()


def test_source_files_hashes_content_and_skips_caches(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    (tmp_path / "pkg" / "logo.png").write_bytes(b"png")
    first = source_files([tmp_path / "pkg"], tmp_path)
    assert list(first) == ["pkg/a.py"]
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert source_files([tmp_path / "pkg"], tmp_path) != first


def test_stamp_round_trip_and_freshness(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    assert not is_fresh(bundle, "d1")
    bundle.mkdir()
    assert read_stamp(bundle) is None
    write_stamp(bundle, "d1")
    assert read_stamp(bundle) == "d1"
    assert not is_fresh(bundle, "d1"), "no BUILD-INFO.json: the self-test never passed"
    (bundle / "BUILD-INFO.json").write_text("{}")
    assert stale_reason(bundle, "d1").startswith(str(bundle / "BUILD-INFO.json"))  # invalid: never trusted
    assert stale_reason(bundle, "d2") == "inputs changed (d1 -> d2)"


STAMP = "1" * 64


def test_a_damaged_bundle_is_not_trusted(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "linux-cpu", "full")
    assert stale_reason(bundle, STAMP) is None and is_fresh(bundle, STAMP, full=True)
    weights = bundle / "models" / "demo-clip" / "weights.bin"
    old = weights.stat()
    # same size, older mtime: the quick check (sizes, mtimes) cannot see it, the full one does
    data = bytearray(weights.read_bytes())
    data[0] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert stale_reason(bundle, STAMP) is None
    assert "models/demo-clip/weights.bin: differ: sha256" in str(stale_reason(bundle, STAMP, full=True))
    # an edit that touches the mtime is seen by the quick check too
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(old.st_atime_ns, old.st_mtime_ns + 10**9))
    assert "weights.bin: differ: sha256" in str(stale_reason(bundle, STAMP))
    weights.write_bytes(bytes(data[:-1]))
    assert "weights.bin: differ: size" in str(stale_reason(bundle, STAMP))


def test_a_missing_or_extra_file_or_another_record_is_not_trusted(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "linux-cpu", "lite")
    (bundle / "_internal" / "base_library.zip").unlink()
    assert "_internal/base_library.zip: missing" in str(stale_reason(bundle, STAMP))
    bundle = make_bundle(tmp_path / "b", "linux-cpu", "lite")
    (bundle / "_internal" / "extra.so").write_bytes(b"x")
    assert "_internal/extra.so: extra" in str(stale_reason(bundle, STAMP))
    bundle = make_bundle(tmp_path / "c", "linux-cpu", "lite")
    (bundle / "RECORD").write_text((bundle / "RECORD").read_text() + "\n")
    assert stale_reason(bundle, STAMP) == "RECORD is not the one BUILD-INFO.json names"
    (bundle / "RECORD").unlink()
    assert "RECORD: missing" in str(stale_reason(bundle, STAMP))
    (bundle / ".mlfreeze-stamp").write_text("not json")
    assert read_stamp(bundle) is None


def test_installed_distributions_sees_this_environment() -> None:
    dists = installed_distributions()
    assert "pytest" in dists and dists["pytest"][0].isdigit()


def test_inputs_for_collects_goldens_entry_and_python(tmp_path: Path) -> None:
    from mlfreeze.bundle.freeze import AppConfig, BundleModel, inputs_for, spec_params

    (tmp_path / "app").mkdir()
    for name in ("main.py", "other.py"):
        (tmp_path / "app" / name).write_text("print(1)\n")
    (tmp_path / "goldens").mkdir()
    golden = tmp_path / "goldens" / "m.json"
    golden.write_text('{"v": [1.0]}\n')
    prune_file = tmp_path / "prune.toml"
    prune_file.write_text("")
    model = BundleModel(id="m", kind="clip", arch="a", embed_dim=4, files={}, sha256={"m/w.bin": "ab" * 32},
                        roles={}, verify={})

    def digest(entry: str) -> str:
        app = AppConfig(app="x", entry=tmp_path / "app" / entry, version="1", model_set="s",
                        sources=(tmp_path / "app",), pathex=(tmp_path,))
        params = spec_params(app=app, flavor="full", name="x-1-p-full", excludes=())
        return inputs_for(app=app, platform="p", flavor="full", params=params, models=[model],
                          prune_file=prune_file, root=tmp_path, goldens_dir=tmp_path / "goldens",
                          distributions={}).digest()

    first = digest("main.py")
    assert digest("main.py") == first
    assert digest("other.py") != first, "another entry script is another app"
    golden.write_text('{"v": [2.0]}\n')
    assert digest("main.py") != first, "re-pinned goldens are copied into models/: the bundle changes"


def test_only_the_app_part_leaves_the_base_digest_alone() -> None:
    base = _inputs(app_sources={"app/cli.py": "aa" * 32}, imports=("json", "numpy"))
    edited = replace(base, app_sources={"app/cli.py": "bb" * 32, "app/new.py": "cc" * 32})
    assert edited.digest() != base.digest() and edited.base_digest() == base.base_digest()
    changed = [k for k, v in edited.parts().items() if base.parts()[k] != v]
    assert changed == ["app"]
    for other in (replace(base, imports=("json", "numpy", "numpy.linalg")), replace(base, models={}),
                  replace(base, distributions={"torch": "2.14.1"}), replace(base, sources={"lock.txt": "00" * 32}),
                  replace(base, params={"excludes": []}), replace(base, flavor="slim")):
        assert other.base_digest() != base.base_digest()


def test_import_change_names_the_distribution_and_version() -> None:
    line = import_change(["json", "os"], ["json", "numpy", "numpy.linalg"], versions={"numpy": "2.4.6"},
                         owners={"numpy": ["numpy"], "json": []})
    assert line == "+numpy (numpy 2.4.6), +numpy.linalg, -os"
    assert import_change([], ["pytest"]).startswith("+pytest (pytest ")  # read from this environment


def _stamped(tmp_path: Path, inputs: FreezeInputs) -> Path:
    bundle = make_bundle(tmp_path, "linux-cpu", "lite")
    write_stamp(bundle, inputs.digest(), inputs, ["_internal/app/cli.py"])
    return bundle


def test_update_refusal_says_why_in_one_line(tmp_path: Path) -> None:
    base = _inputs(app_sources={"app/cli.py": "aa" * 32}, imports=("json",))
    bundle = _stamped(tmp_path, base)
    assert stamped_app_files(bundle) == ["_internal/app/cli.py"]
    assert update_refusal(bundle, replace(base, app_sources={"app/cli.py": "bb" * 32})) is None
    why = update_refusal(bundle, replace(base, imports=("json", "pytest")))
    assert why is not None and why.startswith("the app's imports of outside modules changed: +pytest (pytest")
    assert update_refusal(bundle, replace(base, distributions={"torch": "2.14.2", "numpy": "2.4.6", "idna": "3.2"})) \
        == PART_CHANGES["distributions"] + ": +idna 3.2, ~torch 2.14.1 -> 2.14.2"
    assert update_refusal(bundle, replace(base, models={})) == PART_CHANGES["models"] + ": -m/a.bin"
    lock = replace(base, sources={"app.py": "cd" * 32, "locks/linux-cuda.txt": "ef" * 32})
    assert update_refusal(bundle, lock) == PART_CHANGES["sources"] + ": +locks/linux-cuda.txt"
    both = update_refusal(bundle, replace(lock, params={"excludes": ["tkinter", "numpy"], "datas": []}))
    assert both == f"{PART_CHANGES['sources']}: +locks/linux-cuda.txt; {PART_CHANGES['params']}: +datas, ~excludes"
    old = make_bundle(tmp_path / "old")  # a stamp of before updates in place: the digest alone
    assert update_refusal(tmp_path / "nothing", base) == "no bundle yet"
    assert "records no parts" in str(update_refusal(old, base))
    (bundle / "_internal" / "libpayload.so").write_bytes(b"damaged")
    assert "libpayload.so: differ: size" in str(update_refusal(bundle, replace(base, app_sources={})))


def test_relink_links_drops_and_adds_without_writing_through(tmp_path: Path) -> None:
    old = make_bundle(tmp_path / "dist", "linux-cpu", "lite")
    (old / "_internal" / "app" / "gone").mkdir(parents=True)
    (old / "_internal" / "app" / "gone" / "mod.py").write_text("old = 1\n")
    (old / "_internal" / "app" / "cli.py").write_text("old = 1\n")
    new_cli = tmp_path / "cli.py"
    new_cli.write_text("new = 2\n")
    staged = tmp_path / "staging" / old.name
    linked = relink(old, staged, drop=["_internal/app/gone/mod.py", "_internal/app/cli.py"],
                    add={"_internal/app/cli.py": new_cli})
    assert (staged / "_internal" / "app" / "cli.py").read_text() == "new = 2\n"
    assert (old / "_internal" / "app" / "cli.py").read_text() == "old = 1\n", "the old bundle's file was written"
    assert not (staged / "_internal" / "app" / "gone").exists(), "a folder the drop emptied stays behind"
    assert not any((staged / n).exists() for n in ("RECORD", "BUILD-INFO.json", ".mlfreeze-stamp"))
    payload = staged / "_internal" / "libpayload.so"
    assert payload.stat().st_ino == (old / "_internal" / "libpayload.so").stat().st_ino
    assert "_internal/libpayload.so" in linked and "_internal/app/cli.py" not in linked
    assert (staged / "photo-search").stat().st_mode & 0o111, "links keep the executable bit"


def test_inputs_for_keeps_the_apps_files_apart_from_everything_else(tmp_path: Path) -> None:
    """An edit of an own module or a datas file moves only the app part; a new outside import, the base."""
    from mlfreeze.bundle.freeze import AppConfig, app_layout, inputs_for, spec_params
    from mlfreeze.bundle.modgraph import app_graph

    (tmp_path / "pkg").mkdir()
    (tmp_path / "main.py").write_text("import pkg.core\n")
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "core.py").write_text("import json\n")
    (tmp_path / "data.txt").write_text("v1\n")
    prune_file = tmp_path / "prune.toml"
    prune_file.write_text("")
    app = AppConfig(app="x", entry=tmp_path / "main.py", version="1", model_set="s", sources=(tmp_path / "main.py",),
                    pathex=(tmp_path,), datas=((tmp_path / "data.txt", "."),))

    def inputs() -> FreezeInputs:
        graph = app_graph(["main"], [tmp_path])
        params = spec_params(app=app, flavor="lite", name="x-1-p-lite", excludes=(), entry_module="main",
                             own_packages=graph.top_level())
        params["datas"] = [[str(tmp_path / "data.txt"), "."]]
        assert set(app_layout(graph, params["datas"])) == {"_internal/main.py", "_internal/pkg/__init__.py",
                                                           "_internal/pkg/core.py", "_internal/data.txt"}
        return inputs_for(app=app, platform="p", flavor="lite", params=params, models=[], prune_file=prune_file,
                          root=tmp_path, distributions={}, graph=graph)

    first = inputs()
    (tmp_path / "pkg" / "core.py").write_text("import json  # a comment\n")
    edited = inputs()
    (tmp_path / "data.txt").write_text("v2\n")
    data = inputs()
    assert len({first.digest(), edited.digest(), data.digest()}) == 3
    assert first.base_digest() == edited.base_digest() == data.base_digest()
    (tmp_path / "pkg" / "core.py").write_text("import json\nimport csv\n")
    assert inputs().base_digest() != first.base_digest() and "csv" in inputs().imports
