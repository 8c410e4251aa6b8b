"""One build's options, folded from the command line, the environment and ``[tool.mlfreeze]``
before anything runs (cibuildwheel's ``Options`` is the model): the stages take this object and
never see argparse.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlfreeze.errors import UsageError
from mlfreeze.models.fetch import env_offline
from mlfreeze.models.manifest import Manifest, check_model_set
from mlfreeze.platforms.profiles import Profile, load_profile
from mlfreeze.project.config import ProjectConfig, load_config
from mlfreeze_runtime.buildinfo import FLAVORS


def parse_flavors(value: str | None, config: ProjectConfig) -> tuple[str, ...]:
    """``--flavors full,slim`` -> ("full", "slim"); None or empty: the project's ``flavors``.
    UsageError (exit 2) naming the allowed flavors for an unknown one."""
    if not value:
        return config.flavors
    flavors = tuple(f.strip() for f in value.split(",") if f.strip())
    unknown = [f for f in flavors if f not in FLAVORS]
    if unknown or not flavors:
        raise UsageError(f"--flavors {value!r}: allowed flavors are {', '.join(FLAVORS)} (comma-separated)")
    return flavors


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    """Everything ``mlfreeze build`` decides before its first stage.

    ``manifest`` is loaded and the set checked against the project's ``uses`` (TOML only);
    ``cache_dir`` None means $MLFREEZE_CACHE or the user cache dir (mlfreeze.models.cache);
    ``offline`` is $MLFREEZE_OFFLINE; ``verify`` re-hashes an unchanged bundle against RECORD
    before reusing it; ``plan_only`` prints the plan and runs nothing (any host)."""

    profile: Profile
    config: ProjectConfig
    flavors: tuple[str, ...]
    model_set: str
    manifest: Manifest
    cache_dir: Path | None = None
    offline: bool = False
    force: bool = False
    verify: bool = False
    plan_only: bool = False

    @classmethod
    def from_cli(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> BuildOptions:
        """From ``mlfreeze build``'s parsed arguments; ConfigError/UsageError (exit 2) on a bad
        profile, flavor list, manifest or set, before anything is installed or imported."""
        env = os.environ if env is None else env
        profile = load_profile(args.platform)
        config = load_config()
        flavors = parse_flavors(args.flavors, config)
        model_set = args.model_set or config.model_set
        manifest = check_model_set(config, args.manifest, model_set)
        return cls(profile=profile, config=config, flavors=flavors, model_set=model_set, manifest=manifest,
                   cache_dir=Path(args.cache) if args.cache else None, offline=env_offline(env),
                   force=args.force, verify=args.verify, plan_only=args.plan)
