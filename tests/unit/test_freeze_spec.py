"""The spec files are declarative: run them with recording stand-ins for PyInstaller's classes."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mlfreeze.bundle.freeze import (
    ENTRY_HOOK,
    HOOKS,
    NAMES_HOOK,
    PROCESS_HOOKS,
    RUNTIME_HOOK,
    SELFTEST_ENTRY,
    SPECS,
    UPDATE_ENTRY,
    AppConfig,
    bundle_name,
    load_app_config,
    spec_params,
)
from mlfreeze.errors import ConfigError


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def make(self, kind: str) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((kind, args, kwargs))
            return SimpleNamespace(kind=kind, pure=f"{kind}-pure", scripts=["boot", "rthook", "main"],
                                   binaries=f"{kind}-bin", datas=f"{kind}-datas")
        return build


def _app(tmp_path: Path) -> AppConfig:
    return AppConfig(app="photo-search", entry=tmp_path / "main.py", version="0.1.0", model_set="demo",
                     sources=(), pathex=(tmp_path, tmp_path))


def _run_spec(flavor: str, params: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              via_env: bool = False) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    path = tmp_path / "params.json"
    path.write_text(json.dumps(params))
    rec = _Recorder()
    ns: dict[str, Any] = {k: rec.make(k) for k in ("Analysis", "PYZ", "EXE", "COLLECT")}
    if via_env:
        monkeypatch.setattr(sys, "argv", [str(SPECS / f"{flavor}.spec")])
        monkeypatch.setenv("MLFREEZE_SPEC_PARAMS", str(path))
    else:
        monkeypatch.setattr(sys, "argv", [str(SPECS / f"{flavor}.spec"), str(path)])
    spec = SPECS / f"{flavor}.spec"
    exec(compile(spec.read_text(), str(spec), "exec"), ns)
    return rec.calls


def test_full_spec_builds_two_executables_into_one_collect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = spec_params(app=_app(tmp_path), flavor="full", name="photo-search-0.1.0-linux-cuda-full",
                         excludes=["tkinter"], hiddenimports=["torch"])
    calls = _run_spec("full", params, tmp_path, monkeypatch)
    analysis, launcher, updater = [c for c in calls if c[0] == "Analysis"]
    assert analysis[1][0] == [str(tmp_path / "main.py")]
    assert analysis[2]["excludes"] == ["tkinter"] and analysis[2]["hookspath"] == [str(HOOKS)]
    # the runtime always first; then prune.toml's, then the modules of every stack part the app uses
    assert analysis[2]["hiddenimports"][:2] == ["mlfreeze_runtime", "torch"]
    assert {"open_clip", "insightface", "onnxruntime", "faiss"} <= set(analysis[2]["hiddenimports"])
    # freeze_support() and the windowed app's streams first (a spawn child must exit before anything
    # else runs); the app's runtime hooks end with the one that turns MLFREEZE_ENTRY=selftest into the self-test
    # (PyInstaller's own multiprocessing hook first: it runs custom hooks before its own)
    hooks = analysis[2]["runtime_hooks"]
    assert [Path(h).name for h in hooks] == ["pyi_rth_multiprocessing.py", "rthook_freeze_support.py",
                                             "rthook_stdio.py", RUNTIME_HOOK.name, NAMES_HOOK.name,
                                             ENTRY_HOOK.name]
    assert hooks[1:] == [*map(str, PROCESS_HOOKS), str(RUNTIME_HOOK), str(NAMES_HOOK), str(ENTRY_HOOK)]
    exes = [c for c in calls if c[0] == "EXE"]
    assert [e[2]["name"] for e in exes] == ["photo-search-selftest", "photo-search-update", "photo-search"]
    # <app>-selftest is a launcher from its own Analysis (no app PYZ, no runtime hooks, ML stack out)
    assert launcher[1][0] == [str(SELFTEST_ENTRY)] and launcher[2]["runtime_hooks"] == []
    assert launcher[2]["excludes"] == updater[2]["excludes"] and "mlfreeze_runtime.verify" in launcher[2]["excludes"]
    pyzs = [c for c in calls if c[0] == "PYZ"]
    assert [p[1] for p in pyzs] == [("Analysis-pure",)] * 3  # one per Analysis: the app's PYZ is in one EXE
    assert exes[2][1][1] == ["boot", "rthook", "main"]
    (collect,) = [c for c in calls if c[0] == "COLLECT"]
    assert collect[2]["name"] == "photo-search-0.1.0-linux-cuda-full"
    assert [a for a in collect[1] if isinstance(a, str)] == ["Analysis-bin", "Analysis-datas"] * 3
    assert collect[2]["upx"] is False
    assert_own_updater(calls, updater)


def assert_own_updater(calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
                       updater: tuple[str, tuple[Any, ...], dict[str, Any]]) -> None:
    """<app>-update: its own Analysis of update_entry.py (not the app's PYZ), no runtime hooks,
    the ML stack, the self-test and cryptography excluded; its EXE goes into the one COLLECT."""
    assert updater[1][0] == [str(UPDATE_ENTRY)] and updater[2]["runtime_hooks"] == []
    assert {"mlfreeze_runtime.verify", "cryptography"} <= set(updater[2]["excludes"])
    assert "urllib3" not in updater[2]["excludes"]  # tuf.ngclient imports it
    pyzs = [c for c in calls if c[0] == "PYZ"]
    exe = next(c for c in calls if c[0] == "EXE" and c[2]["name"].endswith("-update"))
    assert len(pyzs) >= 2 and pyzs[-1][1] == ("Analysis-pure",) and exe[1][1] == ["boot", "rthook", "main"]
    (collect,) = [c for c in calls if c[0] == "COLLECT"]
    assert sum(1 for a in collect[1] if getattr(a, "kind", "") == "EXE") == len([c for c in calls if c[0] == "EXE"])


def test_own_packages_are_collected_as_source_behind_a_launcher(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With an entry module, the app's packages go into _internal/ as .py files (outside the PYZ) and
    the Analysis runs the launcher, which plan_freeze points ``script`` at; without one, the entry."""
    from mlfreeze.bundle.freeze import launcher_source

    plain = spec_params(app=_app(tmp_path), flavor="lite", name="n-lite", excludes=[])
    assert plain["script"] == plain["entry"] and plain["module_collection_mode"] == {}
    params = spec_params(app=_app(tmp_path), flavor="lite", name="n-lite", excludes=[], entry_module="app.__main__",
                         own_packages=["app", "helpers"])
    assert params["module_collection_mode"] == {"app": "py", "helpers": "py"}
    assert "app.__main__" in params["hiddenimports"]
    for flavor in ("full", "lite", "slim"):
        analysis = _run_spec(flavor, {**params, "selftest": "s", "selftest_entry": "s.py", "script": "launcher.py"},
                             tmp_path, monkeypatch)[0]
        assert analysis[1][0] == ["launcher.py"]
        assert analysis[2]["module_collection_mode"] == {"app": "py", "helpers": "py"}
    source = launcher_source("app.__main__")
    assert "runpy.run_module('app.__main__', run_name=\"__main__\", alter_sys=True)" in source
    compile(source, "launcher.py", "exec")


def test_lite_spec_reads_params_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = spec_params(app=_app(tmp_path), flavor="lite", name="n-lite", excludes=["torch", "numpy"])
    assert "selftest" not in params
    calls = _run_spec("lite", params, tmp_path, monkeypatch, via_env=True)
    assert [c[0] for c in calls] == ["Analysis", "Analysis", "PYZ", "EXE", "PYZ", "EXE", "COLLECT"]
    assert calls[0][2]["excludes"] == ["torch", "numpy"]
    assert calls[3][2]["name"] == "photo-search-update" and calls[5][2]["name"] == "photo-search"
    assert calls[6][2]["name"] == "n-lite"
    assert_own_updater(calls, calls[1])


def test_slim_spec_builds_the_updater_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = spec_params(app=_app(tmp_path), flavor="full", name="n-slim", excludes=[],
                         updater_excludes=["numpy", "urllib3"])
    calls = _run_spec("slim", params, tmp_path, monkeypatch)
    updater = [c for c in calls if c[0] == "Analysis"][2]
    assert updater[2]["excludes"][0] == "numpy"
    assert_own_updater(calls, updater)


@pytest.mark.parametrize("flavor", ["full", "lite", "slim"])
@pytest.mark.parametrize("console", [True, False])
def test_console_reaches_the_apps_exe_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flavor: str,
                                           console: bool) -> None:
    """[tool.mlfreeze] console = false makes the app's EXE windowed; <app>-selftest and <app>-update keep
    their console (the self-test reports on stdout); every flavor's app gets the process hooks."""
    from dataclasses import replace

    params = spec_params(app=replace(_app(tmp_path), console=console), flavor=flavor, name=f"n-{flavor}",
                         excludes=[])
    calls = _run_spec(flavor, params, tmp_path, monkeypatch)
    exes = {c[2]["name"]: c[2]["console"] for c in calls if c[0] == "EXE"}
    assert exes.pop("photo-search") is console
    assert exes and all(v is True for v in exes.values()), exes
    app_analysis = [c for c in calls if c[0] == "Analysis"][0]
    assert app_analysis[2]["runtime_hooks"][1:3] == [str(h) for h in PROCESS_HOOKS]


def test_console_key_is_a_boolean(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    base = '[project]\nversion = "1"\n[tool.mlfreeze]\napp = "x"\nentry = "main.py"\n'
    (tmp_path / "pyproject.toml").write_text(base + "console = false\n")
    assert load_app_config(tmp_path).console is False
    (tmp_path / "pyproject.toml").write_text(base)
    assert load_app_config(tmp_path).console is True
    (tmp_path / "pyproject.toml").write_text(base + 'console = "no"\n')
    with pytest.raises(ConfigError, match="console. must be true or false"):
        load_app_config(tmp_path)


def test_spec_without_params_says_how_to_pass_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["lite.spec"])
    monkeypatch.delenv("MLFREEZE_SPEC_PARAMS", raising=False)
    spec = SPECS / "lite.spec"
    with pytest.raises(SystemExit, match="after `--`"):
        exec(compile(spec.read_text(), str(spec), "exec"), {})


def test_bundle_name() -> None:
    assert bundle_name("photo-search", "0.1.0", "linux-cuda", "lite") == "photo-search-0.1.0-linux-cuda-lite"


def test_load_app_config(tmp_path: Path) -> None:
    (tmp_path / "examples" / "app").mkdir(parents=True)
    (tmp_path / "examples" / "app" / "__main__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nversion = "1.2.3"\n[tool.mlfreeze]\napp = "x"\nentry = "examples/app/__main__.py"\n'
        'model_set = "demo"\n')
    cfg = load_app_config(tmp_path)
    assert (cfg.app, cfg.version, cfg.model_set) == ("x", "1.2.3", "demo")
    assert cfg.entry == tmp_path / "examples/app/__main__.py" and tmp_path / "examples" in cfg.pathex
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nversion = "1"\n[tool.mlfreeze]\napp = "x"\nentry = "nope.py"\n')
    with pytest.raises(ConfigError, match="nope.py"):
        load_app_config(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nversion = "1"\n[tool.mlfreeze]\nentry = "nope.py"\n')
    with pytest.raises(ConfigError, match="tool.mlfreeze.app"):
        load_app_config(tmp_path)


def test_project_hooks_exist() -> None:
    names = {p.name for p in HOOKS.glob("*.py")}
    assert {"hook-open_clip.py", "hook-torchvision.py", "hook-insightface.py", "hook-faiss.py",
            "rthook_models_dir.py"} <= names


def test_clip_only_app_collects_clip_and_excludes_the_rest(tmp_path: Path) -> None:
    from dataclasses import replace

    app = replace(_app(tmp_path), uses=("clip",), hiddenimports=("myplugin",), excludes=("tkinter",))
    params = spec_params(app=app, flavor="full", name="x", excludes=[], hiddenimports=["numpy"])
    assert {"torch", "torchvision", "open_clip", "myplugin"} <= set(params["hiddenimports"])
    assert not {"insightface", "onnxruntime", "faiss", "cv2"} & set(params["hiddenimports"])
    assert {"insightface", "onnxruntime", "onnx", "cv2", "faiss", "tkinter"} <= set(params["excludes"])
    assert not {"torch", "open_clip"} & set(params["excludes"])
    lite = spec_params(app=app, flavor="lite", name="x", excludes=["torch"], hiddenimports=[])
    assert "myplugin" in lite["hiddenimports"] and "torch" in lite["excludes"]
    assert lite["hooksconfig"] == {"mlfreeze_runtime": {"ml": False}}
    assert params["hooksconfig"] == {"mlfreeze_runtime": {"ml": True}}


def test_lite_keeps_the_apps_hidden_imports_but_never_the_ml_stack_it_leaves_out(tmp_path: Path) -> None:
    from dataclasses import replace

    app = replace(_app(tmp_path), uses=("clip", "faces"),
                  hiddenimports=("uvicorn.logging", "torch.nn", "onnxruntime", "torchvision_extra"))
    lite = spec_params(app=app, flavor="lite", name="x", excludes=["torch", "onnxruntime"], hiddenimports=[])
    assert "uvicorn.logging" in lite["hiddenimports"] and "torchvision_extra" in lite["hiddenimports"]
    assert not {"torch.nn", "onnxruntime"} & set(lite["hiddenimports"])
    assert {"torch", "onnxruntime"} <= set(lite["excludes"])
    full = spec_params(app=app, flavor="full", name="x", excludes=[], hiddenimports=[])
    assert {"torch.nn", "onnxruntime", "uvicorn.logging"} <= set(full["hiddenimports"])


def test_datas_expand_globs_and_refuse_a_missing_source(tmp_path: Path) -> None:
    from mlfreeze.bundle.freeze import data_pairs
    from mlfreeze.errors import FreezeError

    (tmp_path / "a.png").write_bytes(b"1")
    (tmp_path / "b.png").write_bytes(b"2")
    assert data_pairs([(tmp_path / "*.png", "assets")]) == [[str(tmp_path / "a.png"), "assets"],
                                                           [str(tmp_path / "b.png"), "assets"]]
    with pytest.raises(FreezeError, match="matches no file"):
        data_pairs([(tmp_path / "*.jpg", "assets")])


def test_slim_takes_clip_as_onnx_and_excludes_torch() -> None:
    from mlfreeze.bundle.freeze import SLIM_CLIP_HIDDENIMPORTS, stack_modules

    hidden, excludes = stack_modules(("clip", "faiss"), "slim")
    assert set(SLIM_CLIP_HIDDENIMPORTS) <= set(hidden) and "faiss" in hidden
    assert not {"torch", "open_clip", "torchvision"} & set(hidden)
    assert {"torch", "open_clip", "insightface"} <= set(excludes)
    full_hidden, _ = stack_modules(("clip",), "full")
    assert "torch" in full_hidden and "mlfreeze_runtime.onnx_clip" not in full_hidden


def test_the_goldens_opt_out_reaches_the_freeze(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n\n[tool.mlfreeze]\n'
                                             'app = "x"\nentry = "app.py"\nunpinned_goldens = ["clip-a"]\n')
    assert load_app_config(tmp_path).unpinned_goldens == ("clip-a",)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n\n[tool.mlfreeze]\n'
                                             'app = "x"\nentry = "app.py"\n')
    assert load_app_config(tmp_path).unpinned_goldens == ()


def _launcher() -> dict[str, Any]:
    import runpy

    return runpy.run_path(str(SELFTEST_ENTRY), run_name="selftest_entry")  # not __main__: nothing runs


@pytest.mark.parametrize(("exe", "want"), [("/b/photo-search-selftest", "/b/photo-search"),
                                           ("C:/b/photo-search-selftest.exe", "C:/b/photo-search.exe"),
                                           ("/b/my.app-selftest", "/b/my.app")])
def test_selftest_launcher_runs_the_app_beside_it(exe: str, want: str) -> None:
    assert _launcher()["app_path"](exe).replace("\\", "/") == want


@pytest.mark.parametrize("exe", ["/b/selftest", "/b/-selftest", "/b/photo-search"])
def test_selftest_launcher_refuses_another_name(exe: str) -> None:
    with pytest.raises(ValueError, match="is not named <app>-selftest"):
        _launcher()["app_path"](exe)


def test_selftest_launcher_gives_the_app_the_callers_library_path() -> None:
    env = _launcher()["app_environment"]
    assert env({"LD_LIBRARY_PATH": "/b/_internal:/opt/x", "LD_LIBRARY_PATH_ORIG": "/opt/x", "A": "1"}) == {
        "LD_LIBRARY_PATH": "/opt/x", "A": "1", "MLFREEZE_ENTRY": "selftest"}
    assert env({"LD_LIBRARY_PATH": "/b/_internal"}) == {"MLFREEZE_ENTRY": "selftest"}


def test_the_projects_collection_modes_join_the_own_packages_and_a_pyz_mode_blocks_updates(tmp_path: Path) -> None:
    """[tool.mlfreeze] module_collection_mode is applied on top of the own packages' "py"; one of the
    app's own packages put back into the PYZ means the app's files are never updated in place."""
    from mlfreeze.bundle.freeze import own_modules_in_pyz
    from mlfreeze.bundle.modgraph import ModuleGraph

    app = dataclasses.replace(_app(tmp_path), module_collection_mode=(("open_clip", "pyz+py"), ("app.jit", "py")))
    params = spec_params(app=app, flavor="full", name="n-full", excludes=[], entry_module="app.__main__",
                         own_packages=["app"])
    assert params["module_collection_mode"] == {"app": "py", "open_clip": "pyz+py", "app.jit": "py"}
    graph = ModuleGraph(own={"app": tmp_path / "app" / "__init__.py"}, external=("open_clip",))
    assert own_modules_in_pyz(app, graph) is None  # open_clip is not the app's; app.jit stays source
    jit_in_pyz = dataclasses.replace(app, module_collection_mode=(("app.jit", "pyz+py"),))
    why = own_modules_in_pyz(jit_in_pyz, graph)
    assert why is not None and "app.jit" in why and "never updated in place" in why
    assert own_modules_in_pyz(jit_in_pyz, None) is None  # no graph: never updated in place anyway
