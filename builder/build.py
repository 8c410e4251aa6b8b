"""``mlfreeze build``: every stage in order for one platform.

doctor -> fetch -> verify -> freeze (+ self-test) per flavor -> sizes. The host is checked
first, so a wrong-host build fails in well under a second, before anything is imported.
Each stage hands its result to the next through ``BuildContext.state``; the stage modules
are imported only when their stage runs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlfreeze.config import FLAVORS, ProjectConfig, load_config
from mlfreeze.errors import UsageError
from mlfreeze.hostinfo import require_host
from mlfreeze.plan import make_plan, render_text
from mlfreeze.platforms.profiles import Profile, load_profile


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
        """--manifest, else the project's ``manifest`` key, else mlfreeze's specs/models.toml (None)."""
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


def check_model_set(config: ProjectConfig, manifest_arg: str | None, model_set: str) -> Any:
    """Load the manifest (TOML only) and refuse an unknown set before any stage runs (UsageError, exit 2).

    The set's models must be of kinds the project ``uses`` (a CLIP-only app cannot build a set with
    face models: they would be neither collected nor self-tested)."""
    from mlfreeze.manifest import check_set, load_manifest

    manifest = load_manifest(Path(manifest_arg) if manifest_arg else config.manifest)
    models = check_set(manifest, model_set)
    kinds = {"clip": "clip", "insightface": "faces"}
    unused = [m.id for m in models if kinds.get(m.kind, m.kind) not in config.uses]
    if unused:
        raise UsageError(f"model set {model_set!r} of {manifest.path} holds {', '.join(unused)}, of a kind this "
                         f"project does not use (uses = {list(config.uses)}); pick another set or add to `uses`")
    return manifest


def _stage(name: str, func: Callable[[BuildContext], object], ctx: BuildContext) -> None:
    print(f"==> {name}", flush=True)
    started = time.perf_counter()
    func(ctx)
    print(f"<== {name} ok ({time.perf_counter() - started:.1f} s)", flush=True)


def stage_doctor(ctx: BuildContext) -> None:
    from mlfreeze import doctor

    doctor.main(argparse.Namespace(platform=ctx.profile.name, uses=ctx.config.uses))


def stage_fetch(ctx: BuildContext) -> None:
    from mlfreeze.fetch import env_offline, fetch_set

    manifest = ctx.state["manifest"]
    ctx.state["fetched"] = fetch_set(manifest, ctx.model_set, cache_dir=ctx.cache_dir, offline=env_offline())


def stage_verify(ctx: BuildContext) -> None:
    import json

    from mlfreeze.verification import goldens_dir_for, model_refs, run_gate

    manifest = ctx.state["manifest"]
    reports = ctx.config.dist_dir / "reports"
    report = reports / f"verify-{ctx.profile.name}.json"
    refs = model_refs(manifest, ctx.state["fetched"], goldens_dir_for(manifest.path))
    run_gate(refs, platform=ctx.profile.name, report=str(report), junit=str(report.with_suffix(".xml")),
             set_name=ctx.model_set)
    ctx.state["verification"] = json.loads(report.read_text())


def stage_freeze(ctx: BuildContext) -> None:
    """Freeze each flavor; each bundle is self-tested from a clean environment before it counts."""
    from mlfreeze.freeze import freeze_bundle, load_app_config
    from mlfreeze.verification import goldens_dir_for, summary_of

    app = load_app_config(ctx.config.root)
    ctx.state["bundles"] = [
        freeze_bundle(profile=ctx.profile, flavor=flavor, root=ctx.config.root, app=app, model_set=ctx.model_set,
                      fetched=ctx.state["fetched"], dist_dir=ctx.config.dist_dir, force=ctx.args.force,
                      goldens_dir=goldens_dir_for(ctx.state["manifest"].path),
                      verification=summary_of(ctx.state["verification"]))
        for flavor in ctx.flavors
    ]


def stage_sizes(ctx: BuildContext) -> None:
    from mlfreeze.sizes import report_bundles

    report_bundles(ctx.state["bundles"], ctx.config.dist_dir / "reports", platform=ctx.profile.name,
                   budgets=ctx.config.budgets)


STAGES: tuple[tuple[str, Callable[[BuildContext], object]], ...] = (
    ("doctor", stage_doctor),
    ("fetch", stage_fetch),
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
    for name, func in STAGES:
        _stage(name, func, ctx)
    print(f"build of {profile.name} ({', '.join(flavors)}) finished")
    return 0
