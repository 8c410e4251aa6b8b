"""``mlfreeze build``: every stage in order for one platform.

The flow is a list you can read (:func:`run_build`): doctor -> fetch -> export (slim only) ->
verify -> freeze -> selftest -> sizes, each stage given the previous stages' typed results. The
options are folded once, before anything runs (:class:`mlfreeze.options.BuildOptions`); the host is
checked first, so a wrong-host build fails in well under a second, before anything is imported.
The stage modules are imported only when their stage runs. The first stage that fails stops the
build with its own exit code. The summary printed at the end starts with what a reader must act
on: a bundle over GitHub's per-asset limit (``mlfreeze release`` will split it) and the budget
verdict; an exceeded budget then fails the build (exit 5) after the reports are written.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from mlfreeze.hostinfo import require_host
from mlfreeze.options import BuildOptions
from mlfreeze.plan import make_plan, render_text

if TYPE_CHECKING:  # the stage modules are imported when their stage runs
    from mlfreeze.bundle.freeze import StagedBundle
    from mlfreeze.models.export import ExportedClip
    from mlfreeze.models.fetch import FetchedModel
    from mlfreeze.sizes.report import SizesReport

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Fetched:
    """fetch: every model of the set, verified in the cache."""

    models: Mapping[str, FetchedModel]


@dataclass(frozen=True, kw_only=True)
class Exported:
    """export: the ONNX towers of each CLIP model (empty unless a slim bundle is built)."""

    clips: Mapping[str, ExportedClip]


@dataclass(frozen=True, kw_only=True)
class Verified:
    """verify: one report per flavor that ships models (dist/reports/verify-<platform>-<flavor>.json)."""

    reports: Mapping[str, Path]


@dataclass(frozen=True, kw_only=True)
class Frozen:
    """freeze: each flavor's bundle in dist/, reused or freshly frozen and waiting for its self-test."""

    staged: tuple[StagedBundle, ...]


@dataclass(frozen=True, kw_only=True)
class Tested:
    """selftest: the bundles that passed their frozen self-test (or were reused as they were)."""

    bundles: tuple[Path, ...]


def run_doctor(opts: BuildOptions) -> None:
    from mlfreeze.project.doctor import check_environment

    check_environment(opts.profile, opts.config.uses, opts.flavors, opts.config)


def run_fetch(opts: BuildOptions) -> Fetched:
    from mlfreeze.models.fetch import fetch_set

    return Fetched(models=fetch_set(opts.manifest, opts.model_set, cache_dir=opts.cache_dir, offline=opts.offline))


def run_export(opts: BuildOptions, fetched: Fetched) -> Exported:
    """Pinned exports are used as fetched (no torch); others come from the derived-artifact cache or
    a child export (mlfreeze.models.export)."""
    if "slim" not in opts.flavors:
        return Exported(clips={})
    from mlfreeze.models.export import export_clips

    return Exported(clips=export_clips(fetched.models, opts.cache_dir))


def run_verify(opts: BuildOptions, fetched: Fetched, exported: Exported) -> Verified:
    """Verify the models of each flavor that ships models, into its own report (+ JUnit XML)."""
    from mlfreeze.bundle.buildinfo import report_path
    from mlfreeze.models.verification import goldens_dir_for, model_refs, run_gate

    reports: dict[str, Path] = {}
    refs = model_refs(opts.manifest, fetched.models, goldens_dir_for(opts.manifest.path), exports=exported.clips)
    for flavor in opts.flavors:
        if flavor == "lite":  # ships no models: its BUILD-INFO records its --health check instead
            continue
        report = report_path(opts.config.dist_dir / "reports", opts.profile.name, flavor)
        report.unlink(missing_ok=True)  # never hand a previous run's report to freeze
        # slim: CLIP is verified on the ONNX path it ships (+ onnx_agreement when torch is here)
        run_gate(refs, platform=opts.profile.name, report=str(report), junit=str(report.with_suffix(".xml")),
                 set_name=opts.model_set, flavor=flavor, clip_path="onnx" if flavor == "slim" else "torch",
                 unproven_ok=opts.config.unproven_onnx)
        reports[flavor] = report
    return Verified(reports=reports)


def run_freeze(opts: BuildOptions, fetched: Fetched, exported: Exported, verified: Verified) -> Frozen:
    from mlfreeze.bundle.freeze import FreezeRequest, freeze_step, load_app_config
    from mlfreeze.models.verification import goldens_dir_for

    app = load_app_config(opts.config.root)
    return Frozen(staged=tuple(
        freeze_step(FreezeRequest(profile=opts.profile, flavor=flavor, root=opts.config.root, app=app,
                                  model_set=opts.model_set, fetched=fetched.models, exports=exported.clips,
                                  dist_dir=opts.config.dist_dir, force=opts.force,
                                  goldens_dir=goldens_dir_for(opts.manifest.path),
                                  verify_report=verified.reports.get(flavor), verify=opts.verify))
        for flavor in opts.flavors))


def run_selftest(opts: BuildOptions, frozen: Frozen) -> Tested:
    """Each new bundle runs its own self-test from a clean environment before it counts (then
    RECORD and BUILD-INFO are written); a reused bundle passed it when it was built."""
    from mlfreeze.bundle.freeze import selftest_step

    return Tested(bundles=tuple(selftest_step(s) for s in frozen.staged))


def run_sizes(opts: BuildOptions, tested: Tested) -> SizesReport:
    from mlfreeze.sizes.report import report_bundles

    return report_bundles(list(tested.bundles), opts.config.dist_dir / "reports", platform=opts.profile.name,
                          budgets=opts.config.budgets, check=False)  # exit 5 comes after the summary (main)


@dataclass(frozen=True, kw_only=True)
class Stages:
    """The stage functions, in the order :func:`run_build` calls them (tests substitute fakes)."""

    doctor: Callable[[BuildOptions], None] = run_doctor
    fetch: Callable[[BuildOptions], Fetched] = run_fetch
    export: Callable[[BuildOptions, Fetched], Exported] = run_export
    verify: Callable[[BuildOptions, Fetched, Exported], Verified] = run_verify
    freeze: Callable[[BuildOptions, Fetched, Exported, Verified], Frozen] = run_freeze
    selftest: Callable[[BuildOptions, Frozen], Tested] = run_selftest
    sizes: Callable[[BuildOptions, Tested], SizesReport] = run_sizes


STAGES = Stages()


class StageClock:
    """Runs one stage between ``==> name`` and ``<== name done (N s)`` lines and keeps the times."""

    def __init__(self) -> None:
        self.took: list[tuple[str, float]] = []

    def run(self, name: str, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        print(f"==> {name}", flush=True)
        started = time.perf_counter()
        try:
            result = func(*args, **kwargs)
        except BaseException:
            print(f"<== {name} FAILED after {time.perf_counter() - started:.1f} s; later stages not run", flush=True)
            raise
        self.took.append((name, time.perf_counter() - started))
        print(f"<== {name} done ({self.took[-1][1]:.1f} s)", flush=True)
        return result


@dataclass(frozen=True, kw_only=True)
class BuildResult:
    bundles: tuple[Path, ...]
    sizes: SizesReport
    took: tuple[tuple[str, float], ...]


def run_build(opts: BuildOptions, stages: Stages = STAGES) -> BuildResult:
    """Every stage in order; the first that raises stops the build (its exception, with its exit
    code, propagates; no later stage starts)."""
    clock = StageClock()
    clock.run("doctor", stages.doctor, opts)
    fetched = clock.run("fetch", stages.fetch, opts)
    exported = clock.run("export", stages.export, opts, fetched)
    verified = clock.run("verify", stages.verify, opts, fetched, exported)
    frozen = clock.run("freeze", stages.freeze, opts, fetched, exported, verified)
    tested = clock.run("selftest", stages.selftest, opts, frozen)
    sizes = clock.run("sizes", stages.sizes, opts, tested)
    return BuildResult(bundles=tested.bundles, sizes=sizes, took=tuple(clock.took))


def summary_lines(opts: BuildOptions, result: BuildResult) -> list[str]:
    """The build's summary: the sizes headline first (release-asset findings, budget verdict),
    then the bundles and reports, then the stage times."""
    from mlfreeze.sizes.render import headline

    lines = [f"summary of the {opts.profile.name} build ({', '.join(opts.flavors)}):"]
    lines += [("!! " if level != "ok" else "   ") + line for level, line in headline(result.sizes.doc)]
    lines += [f"   bundle {bundle}" for bundle in result.bundles]
    lines += [f"   report {path}" for path in result.sizes.written]
    lines.append("   stages " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.took))
    return lines


def main(args: argparse.Namespace, stages: Stages = STAGES) -> int:
    opts = BuildOptions.from_cli(args)
    if opts.plan_only:
        print(render_text(make_plan(opts.profile, opts.config, model_set=opts.model_set, flavors=opts.flavors)))
        return 0
    require_host(opts.profile, "build")
    result = run_build(opts, stages)
    print("\n".join(summary_lines(opts, result)), flush=True)
    from mlfreeze.sizes.report import raise_breaches

    raise_breaches(result.sizes, "build")
    print(f"build of {opts.profile.name} ({', '.join(opts.flavors)}) finished")
    return 0

