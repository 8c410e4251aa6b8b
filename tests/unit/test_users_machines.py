"""The pure parts of "bundles that run on the users' machines": the glibc floor, the profiles'
floor and container, the updater's refusal, the signing plans and config, the stdio fallback and
the spawn child's entry module (the real runs are tests/integration/test_users_machines_frozen.py and
test_signing_pe.py)."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest

from mlfreeze.bundle import freeze, glibc, signing
from mlfreeze.bundle.closure import Binary
from mlfreeze.errors import ConfigError, UsageError
from mlfreeze.platforms.profiles import PROFILE_DIR, all_profiles, load_profile_file
from mlfreeze.project.signing import MacSigning, WindowsSigning, parse_signing
from mlfreeze_runtime import app as runtime_app
from mlfreeze_runtime import buildinfo, processes, stdio
from mlfreeze_runtime.update.machine import glibc_version
from mlfreeze_runtime.update.variants import Machine, Variant, choose_variant


def _elf(*versions: tuple[str, str]) -> Binary:
    return Binary(format="elf", needed=(), versions=versions)


# ---------------------------------------------------------------------------- glibc floor

def test_the_floor_is_the_newest_glibc_version_and_names_its_file() -> None:
    binaries = {
        "_internal/libpython3.11.so.1.0": _elf(("libm.so.6", "GLIBC_2.29"), ("libm.so.6", "GLIBC_2.35"),
                                               ("libc.so.6", "GLIBC_2.2.5")),
        "_internal/libstdc++.so.6": _elf(("libc.so.6", "GLIBC_2.34"), ("ld-linux-x86-64.so.2", "GLIBC_PRIVATE")),
        "_internal/torch/lib/libc10.so": _elf(("libstdc++.so.6", "GLIBCXX_3.4.29"), ("libstdc++.so.6", "CXXABI_1.3.13"),
                                              ("libc.so.6", "GLIBC_2.35")),
        "tiny": _elf(("libc.so.6", "GLIBC_2.3.4")),
    }
    floor = glibc.floor_of(binaries, {"_internal/libstdc++.so.6", "tiny"})
    # numeric comparison (2.35 > 2.3.4 > 2.29); among equals the first file in path order
    assert (floor.glibc, floor.glibc_file) == ("2.35", "_internal/libpython3.11.so.1.0")
    assert (floor.glibcxx, floor.glibcxx_file, floor.libstdcxx_shipped) == ("3.4.29", "_internal/torch/lib/libc10.so",
                                                                             True)
    assert glibc.floor_of({"x": _elf(("libc.so.6", "GLIBC_ABI_DT_RELR"), ("libc.so.6", "GLIBC_2.34"))}).glibc == "2.36"
    assert glibc.floor_of({}).glibc is None


def test_the_allowed_floor_is_the_profiles_unless_raised_by_the_variable() -> None:
    assert glibc.allowed_floor("linux-cuda", "2.28", {}) == glibc.Allowed(version="2.28", by="profile linux-cuda")
    raised = glibc.allowed_floor("linux-cuda", "2.28", {glibc.FLOOR_ENV: "2.36"})
    assert raised.version == "2.36" and raised.raised and raised.by == "MLFREEZE_GLIBC_FLOOR=2.36"
    assert not glibc.allowed_floor("linux-cuda", "2.28", {glibc.FLOOR_ENV: "2.17"}).raised  # never lowers it
    with pytest.raises(UsageError, match="MLFREEZE_GLIBC_FLOOR='two'"):
        glibc.allowed_floor("linux-cuda", "2.28", {glibc.FLOOR_ENV: "two"})


def test_above_names_the_version_and_the_allowed_floor() -> None:
    floor = glibc.Floor(glibc="2.35", glibc_file="_internal/libpython3.11.so.1.0")
    line = glibc.above(floor, glibc.Allowed(version="2.28", by="profile linux-cuda"))
    assert line is not None and "GLIBC_2.35" in line and "2.28" in line and "MLFREEZE_GLIBC_FLOOR=host" in line
    assert glibc.above(floor, glibc.Allowed(version="2.35", by="MLFREEZE_GLIBC_FLOOR=2.35")) is None
    record = glibc.record(floor, glibc.Allowed(version="2.28", by="profile linux-cuda"))
    doc = {**_minimal_build_info(), "glibc": record}
    assert buildinfo.errors(doc) == []
    assert buildinfo.errors({**doc, "glibc": {**record, "floor": "two"}})


def _minimal_build_info() -> dict[str, Any]:
    return {"schema_version": 2, "app": "a", "version": "1", "platform": "linux-cpu", "accelerator": "cpu",
            "flavor": "lite", "archive_format": "tar.gz", "python": "3.11", "torch": None, "cuda": None,
            "onnxruntime": None, "distributions": {}, "model_set": None, "models": [], "unpinned_goldens": [],
            "verification": None, "selftest": None, "prune": [],
            "record": {"sha256": "0" * 64, "files": 0, "bytes": 0}, "git_commit": None, "inputs_sha256": "1" * 64,
            "built_at": "2026-01-01T00:00:00+00:00"}


def test_every_linux_profile_declares_the_manylinux_floor_and_container() -> None:
    linux = [p for p in all_profiles().values() if p.host_os == "linux"]
    assert linux and all(p.glibc_floor == "2.28" and p.container == "quay.io/pypa/manylinux_2_28_x86_64"
                         for p in linux)
    assert all(p.glibc_floor is None and p.container == "" for p in all_profiles().values() if p.host_os != "linux")


@pytest.mark.parametrize(("edit", "message"), [
    (('glibc_floor = "2.28"\n', ""), "glibc_floor' is missing"),
    (('glibc_floor = "2.28"', 'glibc_floor = "2.17"'), "builds for glibc 2.28, above glibc_floor 2.17"),
    (('glibc_floor = "2.28"', 'glibc_floor = "2.x"'), "expected a glibc version"),
    (("manylinux_2_28_x86_64", "manylinux_2_28_aarch64"), "aarch64 image but host_arch is 'x86_64'"),
])
def test_a_wrong_floor_or_container_names_the_key(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    text = (PROFILE_DIR / "linux-cpu.toml").read_text()
    assert edit[0] in text
    (tmp_path / "linux-cpu.toml").write_text(text.replace(*edit))
    with pytest.raises(ConfigError, match=message):
        load_profile_file(tmp_path / "linux-cpu.toml")


def test_a_floor_on_a_windows_profile_is_refused(tmp_path: Path) -> None:
    text = (PROFILE_DIR / "win-cpu.toml").read_text().replace("constraints", 'glibc_floor = "2.28"\nconstraints', 1)
    (tmp_path / "win-cpu.toml").write_text(text)
    with pytest.raises(ConfigError, match="only Linux profiles"):
        load_profile_file(tmp_path / "win-cpu.toml")


# ---------------------------------------------------------------------------- the updater

def _variant(glibc_floor: str | None) -> Variant:
    return Variant(name="tiny-1-linux-cpu-lite", version="1", platform="linux-cpu", flavor="lite", os="linux",
                   arch="x86_64", accelerator="cpu", glibc=glibc_floor)


@pytest.mark.parametrize(("machine", "floor", "fits"), [
    ("2.31", "2.35", False), ("2.35", "2.35", True), ("2.39", "2.28", True), ("2.31", None, True),
    (None, "2.28", False),
])
def test_the_updater_refuses_a_variant_above_the_machines_glibc(machine: str | None, floor: str | None,
                                                                fits: bool) -> None:
    chosen, reasons = choose_variant(Machine(os="linux", arch="x86_64", glibc=machine), [_variant(floor)])
    assert (chosen is not None) == fits, reasons
    if not fits and machine is not None:
        assert reasons[0] == (f"tiny-1-linux-cpu-lite: refused, needs glibc {floor} or newer, this machine has "
                              f"glibc {machine}")
        # the one line the updater prints when nothing fits names both versions
        assert reasons[-1] == (f"no variant of this release runs on this machine (tiny-1-linux-cpu-lite needs glibc "
                               f"{floor} or newer, this machine has glibc {machine})")


def test_the_machines_glibc_is_read_from_confstr() -> None:
    assert glibc_version(lambda _name: "glibc 2.31") == "2.31"
    assert glibc_version(lambda _name: None) is None
    assert glibc_version(lambda _name: "musl 1.2") is None


# ---------------------------------------------------------------------------- signing

def test_signing_table_names_variables_never_secrets(tmp_path: Path) -> None:
    (tmp_path / "ent.plist").write_text("<plist/>")
    parsed = parse_signing({"windows": {"timestamp_url": "http://ts.example"},
                            "macos": {"identity": "Developer ID Application: X (T)", "entitlements": "ent.plist"}},
                           tmp_path / "pyproject.toml", tmp_path)
    assert parsed.windows == WindowsSigning(timestamp_url="http://ts.example")
    assert parsed.macos is not None and parsed.macos.entitlements == tmp_path / "ent.plist"
    assert parsed.for_os("linux") is None and parsed.for_os("windows") is parsed.windows
    with pytest.raises(ConfigError, match="password_env' is 'hunter2!'"):
        parse_signing({"windows": {"password_env": "hunter2!"}}, tmp_path / "pyproject.toml", tmp_path)
    with pytest.raises(ConfigError, match="signing.linux' is not a known key"):
        parse_signing({"linux": {}}, tmp_path / "pyproject.toml", tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        parse_signing({"macos": {"identity": "I", "entitlements": "none.plist"}}, tmp_path / "p.toml", tmp_path)


def test_windows_plan_signs_each_file_with_secrets_as_placeholders() -> None:
    cfg = WindowsSigning(timestamp_url="http://ts.example", description="Tiny")
    steps = signing.windows_plan(["_internal/a.dll", "tiny.exe"], cfg, "osslsigncode")
    assert [s.target for s in steps] == ["_internal/a.dll", "tiny.exe"]
    argv = steps[1].argv
    assert argv[:4] == ("osslsigncode", "sign", "-pkcs12", "$MLFREEZE_SIGN_PFX") and "-ts" in argv
    assert argv[-4:] == ("-in", "tiny.exe", "-out", "tiny.exe.signed") and steps[1].output == "tiny.exe.signed"
    (one,) = signing.windows_plan(["_internal/a.dll", "tiny.exe"], cfg, "signtool")
    assert one.argv[:2] == ("signtool", "sign") and "$MLFREEZE_SIGN_PFX_PASSWORD" in one.argv
    assert one.argv[-2:] == ("_internal/a.dll", "tiny.exe") and "/tr" in one.argv


def test_macos_plan_signs_inside_out_then_notarizes_and_staples() -> None:
    cfg = MacSigning(identity="Developer ID Application: X (T)", entitlements=Path("/p/ent.plist"))
    files = [("tiny", True), ("_internal/libpython3.11.dylib", False), ("_internal/torch/lib/libc10.dylib", False),
             ("tiny-update", True), ("_internal/Tiny.app/Contents/MacOS/Tiny", True)]
    steps = signing.macos_plan("tiny-1-mac-arm64-full", files, ["_internal/Tiny.app"], cfg)
    targets = [s.target for s in steps if s.argv[0] == "codesign"]
    assert targets == ["_internal/Tiny.app/Contents/MacOS/Tiny", "_internal/torch/lib/libc10.dylib",
                       "_internal/libpython3.11.dylib", "tiny", "tiny-update", "_internal/Tiny.app"]
    sign = next(s for s in steps if s.target == "tiny").argv
    assert sign[:6] == ("codesign", "--force", "--timestamp", "--options", "runtime", "--sign")
    assert "--entitlements" in sign
    assert "--entitlements" not in next(s for s in steps if s.target.endswith("libc10.dylib")).argv
    tail = [s.argv[:3] for s in steps[len(targets):]]
    assert tail == [("ditto", "-c", "-k"), ("xcrun", "notarytool", "submit"), ("xcrun", "stapler", "staple")]
    submit = steps[len(targets) + 1].argv
    assert "--wait" in submit and "$MLFREEZE_NOTARY_PASSWORD" in submit
    no_notary = signing.macos_plan("b", files, [], MacSigning(identity="I", notarize=False))
    assert all(s.argv[0] == "codesign" for s in no_notary)


def test_the_freeze_signs_before_the_selftest_and_seals_after(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    order: list[str] = []
    monkeypatch.setattr(signing, "sign_bundle", lambda *a, **k: order.append("sign") or {"kind": "authenticode"})
    monkeypatch.setattr(freeze.selftest, "check_bundle", lambda *a, **k: order.append("selftest") or "result")
    monkeypatch.setattr(freeze, "seal_bundle", lambda plan, result, *a, **_: order.append(f"seal {a[-1]}"))
    monkeypatch.setattr(freeze.prune, "tree_bytes", lambda _p: 0)
    app = freeze.AppConfig(app="t", entry=tmp_path / "t.py", version="1", model_set="demo", sources=(), pathex=())
    plan: Any = type("P", (), {"bundle": tmp_path, "app": app,
                               "flavor": "lite", "keep_failed": True, "name": "t", "staging": tmp_path,
                               "profile": all_profiles()["win-cpu"]})()
    freeze.selftest_step(freeze.StagedBundle(plan=plan, reused=False))
    assert order == ["sign", "selftest", "seal {'kind': 'authenticode'}"]


# ---------------------------------------------------------------------------- windowed and spawn

def test_missing_streams_get_the_apps_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime_app.DATA_DIR_ENV, str(tmp_path / "data"))
    assert runtime_app.data_dir("tiny") == tmp_path / "data"
    kept = io.StringIO()
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", kept)
    path = stdio.redirect_missing_streams("tiny")
    assert path == tmp_path / "data" / "logs" / "tiny.log"
    print("hello from a windowed app")
    assert sys.stderr is kept  # a stream that exists is left alone
    sys.stdout.flush()
    assert path.read_text() == "hello from a windowed app\n"
    sys.stdout.close()
    monkeypatch.setattr(sys, "stdout", kept)
    assert stdio.redirect_missing_streams("tiny") is None


def test_data_dir_defaults_to_the_platforms_user_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    monkeypatch.delenv(runtime_app.DATA_DIR_ENV, raising=False)
    assert runtime_app.data_dir("tiny") == Path(platformdirs.user_data_dir("tiny", appauthor=False))


def test_the_entry_script_is_collected_under_its_import_name(tmp_path: Path) -> None:
    (tmp_path / "src" / "app").mkdir(parents=True)
    assert freeze.entry_module_name(tmp_path / "src" / "app" / "__main__.py", (tmp_path, tmp_path / "src")) == \
        "app.__main__"
    assert freeze.entry_module_name(tmp_path / "src" / "app" / "__main__.py", (tmp_path / "src", tmp_path)) == \
        "app.__main__"
    assert freeze.entry_module_name(tmp_path / "tiny.py", (tmp_path,)) == "tiny"
    assert freeze.entry_module_name(tmp_path / "my-app.py", (tmp_path,)) is None
    assert freeze.entry_module_name(tmp_path / "__main__.py", (tmp_path,)) is None
    (tmp_path / "broken.py").write_text("def main(:\n    pass\n")  # PyInstaller reports it; no hidden import
    assert freeze.entry_module_name(tmp_path / "broken.py", (tmp_path,)) is None
    app = freeze.AppConfig(app="tiny", entry=tmp_path / "tiny.py", version="1", model_set="demo", sources=(),
                           pathex=(tmp_path,))
    params = freeze.spec_params(app=app, flavor="lite", name="n", excludes=[])
    assert params["entry_module"] == "tiny" and "tiny" in params["hiddenimports"]


def test_the_child_reads_the_entry_module_beside_the_bundles_modules(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert processes.entry_module() is None
    (tmp_path / processes.ENTRY_MODULE_FILE).write_text("app.__main__\n")
    assert processes.entry_module() == "app.__main__"
    (tmp_path / processes.ENTRY_MODULE_FILE).write_text("../evil\n")
    assert processes.entry_module() is None
