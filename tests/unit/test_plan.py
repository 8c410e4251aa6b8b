"""`mlfreeze plan`: pure, any profile on any host; snapshots pin every profile's plan.

Regenerate snapshots after an intended change with UPDATE_SNAPSHOTS=1 and review the diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlfreeze import cli
from mlfreeze.platforms.profiles import all_profiles, load_profile
from mlfreeze.project.config import load_config

SNAPSHOTS = Path(__file__).parent / "snapshots"
HEAVY = ("torch", "open_clip", "insightface", "onnxruntime", "PyInstaller", "faiss", "numpy", "requests", "tqdm")
ROOT = Path(__file__).resolve().parents[2]


def _plan_json(name: str, capsys, *extra: str) -> dict:
    assert cli.main(["plan", "--platform", name, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(autouse=True)
def _no_index_override(monkeypatch):
    monkeypatch.delenv("MLFREEZE_TORCH_INDEX", raising=False)
    monkeypatch.delenv("MLFREEZE_PROJECT", raising=False)


@pytest.mark.parametrize("name", sorted(all_profiles()))
def test_plan_snapshot(name, capsys):
    plan = _plan_json(name, capsys)
    snap = SNAPSHOTS / f"plan-{name}.json"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        # Writing and then comparing would compare the file with itself: an updating run checks
        # nothing, so it says what it did and is skipped, never passed.
        before = snap.read_text() if snap.exists() else None
        after = json.dumps(plan, indent=2) + "\n"
        snap.write_text(after)
        pytest.skip(f"UPDATE_SNAPSHOTS=1: {snap.name} {'unchanged' if before == after else 'rewritten'}; "
                    "review the diff and run again without it")
    assert snap.exists(), f"missing snapshot {snap.name}: run with UPDATE_SNAPSHOTS=1"
    assert plan == json.loads(snap.read_text())


def _install_cmds(plan: dict) -> list[list[str]]:
    return [s["command"] for s in plan["steps"] if s["stage"] == "install"]


def test_linux_cpu_resolves_torch_from_the_cpu_index(capsys):
    plan = _plan_json("linux-cpu", capsys)
    assert "torch==2.14.1" in plan["lock_requirements"] and "torchvision==0.29.1" in plan["lock_requirements"]
    assert plan["torch_index"] == "https://download.pytorch.org/whl/cpu"


def test_index_override_reaches_the_lock(capsys, monkeypatch):
    monkeypatch.setenv("MLFREEZE_TORCH_INDEX", "https://mirror.internal/whl/cpu")
    assert _plan_json("linux-cpu", capsys)["torch_index"] == "https://mirror.internal/whl/cpu"


def test_cu118_pins_torch_2_7(capsys):
    plan = _plan_json("linux-cu118", capsys)
    assert plan["torch"].startswith("2.7.")
    assert any(a.startswith("torch==2.7.") for a in plan["lock_requirements"])
    assert plan["lock_file"] == "locks/linux-cu118.txt"


def test_mac_arm64_from_pypi_expects_coreml(capsys):
    plan = _plan_json("mac-arm64", capsys)
    assert plan["torch_index"] == "PyPI"
    assert "CoreMLExecutionProvider" in plan["expected_providers"]


def test_mac_x64_pins_torch_2_2_and_numpy_below_2(capsys):
    plan = _plan_json("mac-x64", capsys)
    assert plan["torch"].startswith("2.2.")
    assert "numpy<2" in plan["constraints"] and "numpy<2" in plan["lock_requirements"]


def test_install_is_the_hash_checked_lock_then_the_project_without_deps(capsys):
    cmds = _install_cmds(_plan_json("linux-cuda", capsys))
    assert cmds[0] == ["pip", "install", "--require-hashes", "--no-deps", "-r", "locks/linux-cuda.txt"]
    # the checkout is mlfreeze and the example app: one install
    assert cmds[1:] == [["pip", "install", "--no-deps", "--force-reinstall", "."]]


def test_linux_cuda_single_gpu_onnxruntime(capsys):
    plan = _plan_json("linux-cuda", capsys)
    assert plan["onnxruntime"].startswith("onnxruntime-gpu==")
    assert "CUDAExecutionProvider" in plan["expected_providers"]
    reqs = plan["lock_requirements"]
    assert [r for r in reqs if r.startswith("onnxruntime")] == ["onnxruntime-gpu==1.31.1"]
    # insightface's own `onnxruntime` and `opencv-python` requirements are overridden away
    assert "onnxruntime ; sys_platform == 'never'" in plan["lock_overrides"]
    assert "opencv-python ; sys_platform == 'never'" in plan["lock_overrides"]
    assert "onnxruntime-gpu==1.31.1" in plan["lock_overrides"]


def test_flavor_filter_and_outputs(capsys):
    plan = _plan_json("win-cuda", capsys, "--flavor", "lite")
    assert [b["flavor"] for b in plan["bundles"]] == ["lite"]
    assert plan["bundles"][0]["executables"] == ["photo-search.exe", "photo-search-update.exe"]
    assert plan["bundles"][0]["path"].endswith("-win-cuda-lite")
    assert not any(s["stage"] == "freeze" and "full" in s["command"] for s in plan["steps"])


def test_stage_order(capsys):
    stages = [s["stage"] for s in _plan_json("linux-cuda", capsys)["steps"]]
    order = ["install", "doctor", "fetch", "verify", "freeze", "selftest", "sizes", "release"]
    firsts = [stages.index(s) for s in order]
    assert firsts == sorted(firsts)


def test_set_is_carried_to_fetch_and_verify(capsys):
    plan = _plan_json("linux-cuda", capsys, "--set", "demo")
    cmds = {s["stage"]: s["command"] for s in plan["steps"]}
    assert cmds["fetch"][-2:] == ["--set", "demo"] and "demo" in cmds["verify"]


def test_text_plan_is_readable(capsys):
    assert cli.main(["plan", "--platform", "mac-x64"]) == 0
    out = capsys.readouterr().out
    assert "numpy<2" in out and "torch==2.2.2" in out and "--require-hashes" in out


@pytest.mark.integration  # a subprocess
@pytest.mark.parametrize("argv", [["--help"], ["plan", "--platform", "linux-cuda", "--json"]])
def test_help_and_plan_import_nothing_heavy(argv: list[str]) -> None:
    # a fresh interpreter: this test process has imported the ML stack through other tests
    code = ("import sys\nfrom mlfreeze.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                          env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_unknown_platform_exits_2(capsys):
    assert cli.main(["plan", "--platform", "amiga"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown platform 'amiga'" in err


def test_slim_flavor_plans_export_the_onnx_verify_and_the_torch_free_lock(capsys):
    plan = _plan_json("linux-cpu", capsys, "--flavor", "slim")
    (bundle,) = plan["bundles"]
    assert bundle["flavor"] == "slim" and bundle["models"] is True and bundle["spec"] == "mlfreeze/specs/slim.spec"
    assert bundle["executables"] == ["photo-search", "photo-search-selftest", "photo-search-update"]
    assert plan["lock_file"] == "locks/linux-cpu-slim.txt"
    assert not any(r.startswith(("torch", "open-clip-torch")) for r in plan["lock_requirements"])
    stages = [s["stage"] for s in plan["steps"]]
    assert stages.index("fetch") < stages.index("export") < stages.index("verify") < stages.index("freeze")
    verify = next(s["command"] for s in plan["steps"] if s["stage"] == "verify")
    assert verify[verify.index("--flavor") + 1] == "slim"
    assert "dist/reports/verify-linux-cpu-slim.json" in plan["reports"]
    selftests = [s["command"][0] for s in plan["steps"] if s["stage"] == "selftest"]
    assert selftests[0].endswith("-slim/photo-search-selftest")


def test_full_plan_has_no_export_step(capsys):
    assert "export" not in [s["stage"] for s in _plan_json("linux-cuda", capsys, "--flavor", "full")["steps"]]


def test_plan_refuses_an_unknown_set_as_build_plan_does(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--platform", "linux-cuda", "--set", "nosuchset"]) == 2
    assert "unknown model set 'nosuchset'" in capsys.readouterr().err
    assert cli.main(["plan", "--platform", "linux-cuda", "--set", "demo"]) == 0


def test_plan_refuses_an_unknown_model_set_of_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "a"\nversion = "1"\n\n'
                                             '[tool.mlfreeze]\napp = "a"\nentry = "app.py"\nmodel_set = "prod"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFREEZE_PROJECT", raising=False)
    assert cli.main(["plan", "--platform", "linux-cuda"]) == 2
    assert "unknown model set 'prod'" in capsys.readouterr().err
    assert cli.main(["plan", "--platform", "linux-cuda", "--set", "demo"]) == 0  # --set names another


def test_the_selftest_steps_follow_the_apps_contract() -> None:
    """serve: the server is started (a bundle without models) and no --health; smoke: its command line."""
    from mlfreeze.plan import make_plan
    from mlfreeze_runtime.contract import AppContract, Serve, Smoke

    profile = load_profile("linux-cuda")
    base = load_config(ROOT)

    def commands(contract: AppContract) -> list[tuple[str, ...]]:
        plan = make_plan(profile, dataclasses.replace(base, contract=contract), flavors=("full", "lite"))
        return [s.command for s in plan.steps if s.stage == "selftest"]

    plain = commands(AppContract())
    assert [c[1:] for c in plain] == [("--json",), ("--health",), ("--health",)]
    served = commands(AppContract(serve=Serve(ready="/readyz", live="/livez", args=("--host", "{host}"))))
    assert [c[1:] for c in served] == [("--json",), ("--host", "{host}")]  # the lite bundle's server; no --health
    smoked = commands(AppContract(smoke=Smoke(args=("--version",))))
    assert [c[1:] for c in smoked] == [("--json",), ("--version",), ("--version",)]


def test_onnxruntime_line_says_when_the_app_does_not_use_it(tmp_path: Path) -> None:
    from mlfreeze.plan import make_plan, render_text

    profile = load_profile("linux-cuda")
    clip_only = dataclasses.replace(load_config(ROOT), uses=("clip",))
    text = render_text(make_plan(profile, clip_only, flavors=("full", "lite")))
    assert "onnxruntime     not used (uses: clip; no slim flavor)" in text
    slim = render_text(make_plan(profile, clip_only, flavors=("full", "slim")))  # CLIP as ONNX needs it
    assert "onnxruntime     onnxruntime-gpu==1.31.1; expected providers" in slim
    faces = render_text(make_plan(profile, load_config(ROOT), flavors=("full",)))
    assert "onnxruntime     onnxruntime-gpu==1.31.1" in faces
    assert "torch           2.14.1 + torchvision" in faces
    slim_only = render_text(make_plan(profile, load_config(ROOT), flavors=("slim",)))
    assert "torch           not installed: a slim-only build" in slim_only


def test_plan_installs_mlfreeze_from_where_the_projects_noxfile_does(tmp_path: Path) -> None:
    from mlfreeze.plan import noxfile_mlfreeze_source

    assert noxfile_mlfreeze_source(tmp_path) is None  # no noxfile
    (tmp_path / "noxfile.py").write_text("from mlfreeze.sessions import make_sessions\n\n"
                                         "make_sessions(globals(), mlfreeze='build/mlfreeze-0.1.0-py3-none-any.whl')\n")
    assert noxfile_mlfreeze_source(tmp_path) == "build/mlfreeze-0.1.0-py3-none-any.whl"
    (tmp_path / "noxfile.py").write_text("import mlfreeze.sessions\nmlfreeze.sessions.make_sessions(globals(), "
                                         "mlfreeze=SOURCE)\n")
    assert noxfile_mlfreeze_source(tmp_path) is None  # not a literal: the plan's default
