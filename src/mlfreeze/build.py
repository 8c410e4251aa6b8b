"""``mlfreeze build``: every stage in order for one platform.

doctor -> fetch -> export (slim only) -> verify -> freeze (+ self-test) per flavor -> sizes. The host is checked
first, so a wrong-host build fails in well under a second, before anything is imported.
Each stage hands its result to the next through ``BuildContext.state``; the stage modules
are imported only when their stage runs. The first stage that fails stops the build with its
own exit code. The summary printed at the end starts with what a reader must act on: a
bundle over GitHub's per-asset limit (``mlfreeze release`` will split it) and the budget
verdict; an exceeded budget then fails the build (exit 5) after the reports are written.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlfreeze.errors import UsageError
from mlfreeze.hostinfo import require_host
from mlfreeze.models.manifest import check_model_set
from mlfreeze.plan import make_plan, render_text
from mlfreeze.platforms.profiles import Profile, load_profile
from mlfreeze.project.config import ProjectConfig, load_config
from mlfreeze_runtime.buildinfo import FLAVORS


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    profile: Profile
    config: ProjectConfig
    model_set: str
    flavors: tuple[str, ...]
    args: argparse.Namespace
    state: dict[str, Any] = field(default_factory=dict)  # what a stage hands to the next

    @property
    def manifest_path(self) -> Path | None:
        """--manifest, else the project's ``manifest`` key, else mlfreeze's src/mlfreeze/specs/models.toml (None)."""
        return Path(self.args.manifest) if self.args.manifest else self.config.manifest

    @property
    def cache_dir(self) -> Path | None:
        return Path(self.args.cache) if self.args.cache else None


def parse_flavors(value: str | None, config: ProjectConfig) -> tuple[str, ...]:
    if not value:
        return config.flavors
    flavors = tuple(f.strip() for f in value.split(",") if f.strip())
    unknown = [f for f in flavors if f not in FLAVORS]
    if unknown or not flavors:
        raise UsageError(f"--flavors {value!r}: allowed flavors are {', '.join(FLAVORS)} (comma-separated)")
    return flavors


Stage = tuple[str, Callable[[BuildContext], object]]


def run_stages(stages: Sequence[Stage], ctx: BuildContext) -> list[tuple[str, float]]:
    """Run ``stages`` in order; returns ``[(name, seconds)]``. The first stage that raises stops
    the run: its exception (with its exit code) propagates, no later stage starts."""
    took: list[tuple[str, float]] = []
    for name, func in stages:
        print(f"==> {name}", flush=True)
        started = time.perf_counter()
        try:
            func(ctx)
        except BaseException:
            print(f"<== {name} FAILED after {time.perf_counter() - started:.1f} s; later stages not run", flush=True)
            raise
        took.append((name, time.perf_counter() - started))
        print(f"<== {name} done ({took[-1][1]:.1f} s)", flush=True)
    return took


def summary_lines(ctx: BuildContext, took: Sequence[tuple[str, float]]) -> list[str]:
    """The build's summary: the sizes headline first (release-asset findings, budget verdict),
    then the bundles and reports, then the stage times."""
    from mlfreeze.sizes.render import headline

    lines = [f"summary of the {ctx.profile.name} build ({', '.join(ctx.flavors)}):"]
    report = ctx.state.get("sizes")
    if report is not None:
        lines += [("!! " if level != "ok" else "   ") + line for level, line in headline(report.doc)]
    for bundle in ctx.state.get("bundles", []):
        lines.append(f"   bundle {bundle}")
    if report is not None:
        lines += [f"   report {path}" for path in report.written]
    lines.append("   stages " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in took))
    return lines


def stage_doctor(ctx: BuildContext) -> None:
    from mlfreeze.project import doctor

    doctor.main(argparse.Namespace(platform=ctx.profile.name, uses=ctx.config.uses, flavors=ctx.flavors))


def stage_fetch(ctx: BuildContext) -> None:
    from mlfreeze.models.fetch import env_offline, fetch_set

    manifest = ctx.state["manifest"]
    ctx.state["fetched"] = fetch_set(manifest, ctx.model_set, cache_dir=ctx.cache_dir, offline=env_offline())


def stage_export(ctx: BuildContext) -> None:
    """The ONNX towers of each CLIP model, when a slim bundle is built (mlfreeze.models.export): pinned
    exports are used as fetched (no torch), others come from the derived-artifact cache or a child
    export. Hands ``{model id: ExportedClip}`` to verify and freeze as ``state["exports"]``."""
    ctx.state["exports"] = {}
    if "slim" not in ctx.flavors:
        return
    from mlfreeze.models.cache import Cache, default_cache_dir
    from mlfreeze.models.export import _log, export_model

    cache = Cache(ctx.cache_dir or default_cache_dir(), log=_log)
    for mid, fm in ctx.state["fetched"].items():
        if fm.model.kind == "clip":
            ex = export_model(cache, fm)
            print(f"export: {mid}: {ex.origin} ONNX towers, derived from {ex.derived_from}", flush=True)
            ctx.state["exports"][mid] = ex


def stage_verify(ctx: BuildContext) -> None:
    """Verify the models of each flavor that ships models, into its own report
    (dist/reports/verify-<platform>-<flavor>.json + .xml), handed to that flavor's freeze."""
    from mlfreeze.bundle.buildinfo import report_path
    from mlfreeze.models.verification import goldens_dir_for, model_refs, run_gate

    manifest = ctx.state["manifest"]
    reports: dict[str, Path] = {}
    ctx.state["reports"] = reports
    refs = model_refs(manifest, ctx.state["fetched"], goldens_dir_for(manifest.path),
                      exports=ctx.state.get("exports"))
    for flavor in ctx.flavors:
        if flavor == "lite":  # ships no models: its BUILD-INFO records its --health check instead
            continue
        report = report_path(ctx.config.dist_dir / "reports", ctx.profile.name, flavor)
        report.unlink(missing_ok=True)  # never hand a previous run's report to freeze
        # slim: CLIP is verified on the ONNX path it ships (+ onnx_agreement when torch is here)
        run_gate(refs, platform=ctx.profile.name, report=str(report), junit=str(report.with_suffix(".xml")),
                 set_name=ctx.model_set, flavor=flavor, clip_path="onnx" if flavor == "slim" else "torch",
                 unproven_ok=ctx.config.unproven_onnx)
        reports[flavor] = report


def stage_freeze(ctx: BuildContext) -> None:
    """Freeze each flavor; each bundle is self-tested from a clean environment before it counts."""
    from mlfreeze.bundle.freeze import freeze_bundle, load_app_config
    from mlfreeze.models.verification import goldens_dir_for

    app = load_app_config(ctx.config.root)
    ctx.state["bundles"] = [
        freeze_bundle(profile=ctx.profile, flavor=flavor, root=ctx.config.root, app=app, model_set=ctx.model_set,
                      fetched=ctx.state["fetched"], exports=ctx.state.get("exports"),
                      dist_dir=ctx.config.dist_dir, force=ctx.args.force,
                      goldens_dir=goldens_dir_for(ctx.state["manifest"].path),
                      verify_report=ctx.state["reports"].get(flavor), verify=getattr(ctx.args, "verify", False))
        for flavor in ctx.flavors
    ]


def stage_sizes(ctx: BuildContext) -> None:
    from mlfreeze.sizes.report import report_bundles

    ctx.state["sizes"] = report_bundles(ctx.state["bundles"], ctx.config.dist_dir / "reports",
                                        platform=ctx.profile.name, budgets=ctx.config.budgets,
                                        check=False)  # exit 5 comes after the summary (main)


STAGES: tuple[Stage, ...] = (
    ("doctor", stage_doctor),
    ("fetch", stage_fetch),
    ("export", stage_export),
    ("verify", stage_verify),
    ("freeze", stage_freeze),
    ("sizes", stage_sizes),
)


def main(args: argparse.Namespace) -> int:
    profile = load_profile(args.platform)
    config = load_config()
    flavors = parse_flavors(args.flavors, config)
    model_set = args.model_set or config.model_set
    manifest = check_model_set(config, args.manifest, model_set)
    if args.plan:
        print(render_text(make_plan(profile, config, model_set=model_set, flavors=flavors)))
        return 0
    require_host(profile, "build")
    ctx = BuildContext(profile=profile, config=config, model_set=model_set, flavors=flavors, args=args)
    ctx.state["manifest"] = manifest
    took = run_stages(STAGES, ctx)
    print("\n".join(summary_lines(ctx, took)), flush=True)
    report = ctx.state.get("sizes")
    if report is not None:
        from mlfreeze.sizes.report import raise_breaches

        raise_breaches(report, "build")
    print(f"build of {profile.name} ({', '.join(flavors)}) finished")
    return 0
