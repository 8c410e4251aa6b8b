"""``mlfreeze build``: every stage in order for one platform.

doctor -> fetch -> verify -> freeze (+ self-test) per flavor -> sizes. The host is checked
first, so a wrong-host build fails in well under a second, before anything is imported.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

from builder.config import FLAVORS, ProjectConfig, load_config
from builder.errors import UsageError
from builder.hostinfo import require_host
from builder.plan import make_plan, render_text
from platforms.profiles import Profile, load_profile


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    profile: Profile
    config: ProjectConfig
    model_set: str
    flavors: tuple[str, ...]
    args: argparse.Namespace


def parse_flavors(value: str | None, config: ProjectConfig) -> tuple[str, ...]:
    if not value:
        return config.flavors
    flavors = tuple(f.strip() for f in value.split(",") if f.strip())
    unknown = [f for f in flavors if f not in FLAVORS]
    if unknown or not flavors:
        raise UsageError(f"--flavors {value!r}: allowed flavors are {', '.join(FLAVORS)} (comma-separated)")
    return flavors


def _stage(name: str, func: Callable[[BuildContext], object], ctx: BuildContext) -> None:
    print(f"==> {name}", flush=True)
    started = time.perf_counter()
    func(ctx)
    print(f"<== {name} ok ({time.perf_counter() - started:.1f} s)", flush=True)


def stage_doctor(ctx: BuildContext) -> None:
    from builder import doctor

    doctor.main(argparse.Namespace(platform=ctx.profile.name))


STAGES: tuple[tuple[str, Callable[[BuildContext], object]], ...] = (
    ("doctor", stage_doctor),
)


def main(args: argparse.Namespace) -> int:
    profile = load_profile(args.platform)
    config = load_config()
    flavors = parse_flavors(args.flavors, config)
    model_set = args.model_set or config.model_set
    if args.plan:
        print(render_text(make_plan(profile, config, model_set=model_set, flavors=flavors)))
        return 0
    require_host(profile, "build")
    ctx = BuildContext(profile=profile, config=config, model_set=model_set, flavors=flavors, args=args)
    for name, func in STAGES:
        _stage(name, func, ctx)
    print(f"build of {profile.name} ({', '.join(flavors)}) finished")
    return 0
