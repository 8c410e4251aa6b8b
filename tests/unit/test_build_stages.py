"""`mlfreeze build`'s orchestration with each stage replaced by a recording fake: the order, the
first failure stops the build with its own exit code, --plan runs nothing, the summary leads
with the release-asset finding and the budget verdict, and an exceeded budget exits 5 after it."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from mlfreeze import build, cli
from mlfreeze import plan as plan_mod
from mlfreeze.errors import DownloadError, FreezeError, MlfreezeError, VerificationError
from mlfreeze.plan import BUILD_STAGES, PIPELINE
from mlfreeze.platforms.profiles import load_profile
from mlfreeze.project.config import load_config
from mlfreeze.sizes.report import SizesReport
from mlfreeze.units import GITHUB_ASSET_LIMIT

ROOT = Path(__file__).resolve().parents[2]
ORDER = ["doctor", "fetch", "export", "verify", "freeze", "selftest", "sizes"]


def test_the_real_stages_run_in_the_documented_order_and_plan_lists_the_same() -> None:
    assert [f.name for f in fields(build.Stages)] == ORDER == list(BUILD_STAGES)
    assert ("install", *ORDER, "release") == PIPELINE


@pytest.mark.parametrize("flavors", ["full,lite", "slim", "full,lite,slim"])
def test_the_plans_steps_follow_the_pipeline(capsys: pytest.CaptureFixture[str], flavors: str) -> None:
    steps = [s.stage for s in plan_mod.make_plan(load_profile("linux-cuda"), load_config(ROOT),
                                                 flavors=tuple(flavors.split(","))).steps]
    assert steps == sorted(steps, key=PIPELINE.index)  # in pipeline order
    assert set(steps) >= set(PIPELINE) - {"export"}  # export only when a slim bundle is built
    assert ("export" in steps) == ("slim" in flavors)


class Recorder:
    def __init__(self, fail: dict[str, MlfreezeError] | None = None, sizes: SizesReport | None = None) -> None:
        self.ran: list[str] = []
        self.fail = fail or {}
        self.sizes = sizes or _sizes(over_limit=False)

    def stages(self) -> build.Stages:
        return build.Stages(**{name: self._fake(name) for name in ORDER})

    def _fake(self, name: str) -> Any:
        def stage(opts: build.BuildOptions, *previous: Any) -> Any:
            self.ran.append(name)
            assert opts.profile.name == "linux-cpu"
            if name in self.fail:
                raise self.fail[name]
            if name == "selftest":
                return build.Tested(bundles=tuple(Path(f"dist/x-{f}") for f in opts.flavors))
            if name == "sizes":
                return self.sizes
            return previous
        return stage


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(ROOT)
    host_checked: list[str] = []
    monkeypatch.setattr(build, "require_host", lambda profile, command: host_checked.append(profile.name))

    def install(rec: Recorder) -> Recorder:
        monkeypatch.setattr(build, "STAGES", rec.stages())
        monkeypatch.setattr(build.main, "__defaults__", (build.STAGES,))
        rec.host_checked = host_checked  # type: ignore[attr-defined]
        return rec
    return install


def test_every_stage_runs_once_in_order(recorder: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rec = recorder(Recorder())
    assert cli.main(["build", "--platform", "linux-cpu", "--flavors", "lite"]) == 0
    assert rec.ran == ORDER and rec.host_checked == ["linux-cpu"]
    out = capsys.readouterr().out
    assert [ln.split()[1] for ln in out.splitlines() if ln.startswith("==> ")] == ORDER
    assert "summary of the linux-cpu build (lite):" in out and "bundle dist/x-lite" in out
    assert out.rstrip().endswith("build of linux-cpu (lite) finished")


@pytest.mark.parametrize(("stage", "error"), [
    ("doctor", MlfreezeError("env mismatch")), ("fetch", DownloadError("mirror down")),
    ("verify", VerificationError("clip drifted")), ("freeze", FreezeError("PyInstaller failed")),
])
def test_the_first_failure_stops_the_build_with_its_exit_code(recorder: Any, capsys: pytest.CaptureFixture[str],
                                                              stage: str, error: MlfreezeError) -> None:
    rec = recorder(Recorder(fail={stage: error, "sizes": FreezeError("must never run")}))
    assert cli.main(["build", "--platform", "linux-cpu"]) == error.exit_code
    assert rec.ran == ORDER[:ORDER.index(stage) + 1]
    captured = capsys.readouterr()
    assert captured.err == f"mlfreeze build: error: {error.message}\n"
    assert f"<== {stage} FAILED" in captured.out and "finished" not in captured.out


def test_plan_prints_the_steps_and_runs_nothing(recorder: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rec = recorder(Recorder())
    assert cli.main(["build", "--platform", "mac-arm64", "--plan"]) == 0
    assert rec.ran == [] and rec.host_checked == []  # any host may print any plan
    out = capsys.readouterr().out
    assert out.startswith("mlfreeze plan for mac-arm64") and "steps:" in out and "==> " not in out


def _sizes(*, over_limit: bool, breaches: tuple[str, ...] = ()) -> SizesReport:
    actual = GITHUB_ASSET_LIMIT + 1 if over_limit else 1000
    checks = [{"what": "total", "limit_bytes": 10**9, "actual_bytes": 900, "ok": not breaches},
              {"what": "asset-limit", "limit_bytes": GITHUB_ASSET_LIMIT, "actual_bytes": actual, "ok": not over_limit,
               **({"line": "x-full: compressed archive ~2.0 GiB is over GitHub's 2.0 GiB per-asset limit, so "
                           "`mlfreeze release` will split it"} if over_limit else {})}]
    doc = {"bundles": [{"name": "x-full", "checks": checks}], "breaches": list(breaches),
           "budgets": {"measure": "disk"}}
    return SizesReport(doc=doc, breaches=breaches, warnings=(), written=(Path("dist/reports/sizes-linux-cpu.html"),))


def _summary(out: str) -> list[str]:
    lines = out.splitlines()
    return lines[next(i for i, ln in enumerate(lines) if ln.startswith("summary of ")):]


def test_the_summary_leads_with_the_release_asset_finding(recorder: Any, capsys: pytest.CaptureFixture[str]) -> None:
    recorder(Recorder(sizes=_sizes(over_limit=True)))
    assert cli.main(["build", "--platform", "linux-cpu"]) == 0
    summary = _summary(capsys.readouterr().out)
    assert summary[1].startswith("!! release asset: x-full") and "split" in summary[1]
    assert summary[2].startswith("   budgets: all 1 held")
    assert any("report dist/reports/sizes-linux-cpu.html" in ln for ln in summary)


def test_an_exceeded_budget_is_in_the_summary_then_exits_5(recorder: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rec = recorder(Recorder(sizes=_sizes(over_limit=False, breaches=("x-full: 900 bytes exceed 1",))))
    assert cli.main(["build", "--platform", "linux-cpu"]) == 5
    assert rec.ran == ORDER
    captured = capsys.readouterr()
    summary = _summary(captured.out)
    assert summary[1].startswith("   release assets: every compressed archive is under")
    assert summary[2] == "!! budget exceeded: x-full: 900 bytes exceed 1"
    assert captured.err == "mlfreeze build: error: x-full: 900 bytes exceed 1\n"
