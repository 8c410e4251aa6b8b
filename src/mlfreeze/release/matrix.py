"""The GitHub Actions build matrix, derived from ``src/mlfreeze/platforms/*.toml``.

``python -m mlfreeze.release.matrix`` prints ``{"include": [...]}`` (one entry per profile) as one
line of JSON; release.yml's first job writes it to ``$GITHUB_OUTPUT`` and the build job
reads it with ``fromJSON``. So adding or removing a profile changes the matrix with no
edit to the workflow, and a profile whose runner cannot build it fails here, on Linux.

    python -m mlfreeze.release.matrix                    # every profile
    python -m mlfreeze.release.matrix --platform win-cpu # one (workflow_dispatch); "all" = every one
    python -m mlfreeze.release.matrix --names            # profile names, one a line (ci.yml's plan loop)
    python -m mlfreeze.release.matrix --github-output    # also append matrix=<json>, images=<json> and
                                                         # has_images=true|false to $GITHUB_OUTPUT
    python -m mlfreeze.release.matrix --github-output --project DIR   # the project (default: the one here)

``images`` is the same matrix restricted to the Linux profiles, and empty for a project that
declares no server (``[tool.mlfreeze.serve]``: how the server starts, its port variable, its
readiness and liveness paths): release.yml's image job builds, smoke-tests and pushes the OCI image
of each Linux full and slim bundle of a server app (``mlfreeze image``). A CLI or desktop app has
nothing that could become ready in a container, so it gets no image job (``has_images=false``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlfreeze.errors import ConfigError, MlfreezeError, UsageError
from mlfreeze.platforms.profiles import PROFILE_DIR, Profile, all_profiles

# GitHub-hosted runner labels by (host_os, host_arch). A profile's runner must match one.
RUNNER_PATTERNS: dict[tuple[str, str], re.Pattern[str]] = {
    ("linux", "x86_64"): re.compile(r"^ubuntu-(latest|\d\d\.04)$"),
    ("linux", "arm64"): re.compile(r"^ubuntu-(\d\d\.04-arm|24\.04-arm)$"),
    ("macos", "arm64"): re.compile(r"^macos-(latest|1[4-9]|2\d)(-xlarge)?$"),
    ("macos", "x86_64"): re.compile(r"^macos-(13|1[5-9]-intel|2\d-intel)(-large)?$"),
    ("windows", "x86_64"): re.compile(r"^windows-(latest|20\d\d)$"),
    ("windows", "arm64"): re.compile(r"^windows-11-arm$"),
}
ALL = "all"


def check_runner(profile: Profile) -> None:
    """Refuse a runner label that cannot build the profile (Intel mac on an arm runner, ...)."""
    pattern = RUNNER_PATTERNS.get((profile.host_os, profile.host_arch))
    if pattern is None or not pattern.match(profile.runner):
        raise ConfigError(f"{profile.path}: key 'runner' {profile.runner!r} is not a GitHub runner for "
                          f"{profile.host_os}/{profile.host_arch}; pick one that matches host_os and host_arch")


def entry(profile: Profile) -> dict[str, str]:
    check_runner(profile)
    return {
        "platform": profile.name,
        "session": profile.session,
        "runner": profile.runner,
        "python": profile.python,
        "host_os": profile.host_os,
        "accelerator": profile.accelerator,
        "archive_format": profile.archive_format,
        "container": profile.container,  # "" for macOS and Windows: the job runs on the runner itself
    }


def build_matrix(profiles: Mapping[str, Profile], platform: str = ALL) -> dict[str, Any]:
    """``{"include": [entry, ...]}`` sorted by profile name; ``platform`` selects one."""
    if platform not in (ALL, "") and platform not in profiles:
        raise UsageError(f"unknown platform {platform!r}; known: {', '.join(profiles)} (or {ALL!r})")
    chosen = [p for name, p in sorted(profiles.items()) if platform in (ALL, "") or name == platform]
    return {"include": [entry(p) for p in chosen]}


def image_matrix(matrix: Mapping[str, Any], *, serves: bool = True) -> dict[str, Any]:
    """The entries of ``matrix`` whose profile builds on Linux: the platforms that get an image;
    none when the project does not serve (``serves``: it declares ``[tool.mlfreeze.serve]``)."""
    return {"include": [e for e in matrix["include"] if e["host_os"] == "linux" and serves]}


def project_serves(root: Path | None = None) -> bool:
    """Whether the project at ``root`` (default: the one around the working directory) declares
    ``[tool.mlfreeze.serve]``. ConfigError (exit 2) for a project mlfreeze cannot load."""
    from mlfreeze.project.config import load_config

    return load_config(root).contract.serve is not None


def render(matrix: Mapping[str, Any]) -> str:
    return json.dumps(matrix, separators=(",", ":"), sort_keys=True)


def _runs(job: Mapping[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job.get("steps") or [])


def workflow_problems(workflow: Mapping[Any, Any], profiles: Mapping[str, Profile]) -> list[str]:
    """Where release.yml (parsed YAML) and the profiles disagree; empty when they agree.

    The workflow must take its matrix from this module (a job that prints it to
    ``$GITHUB_OUTPUT``, a build job with ``fromJSON`` of that output on ``matrix.runner``
    running ``nox -s $SESSION``), and its ``workflow_dispatch`` choice must list exactly
    ``all`` and every profile.
    """
    problems: list[str] = []
    jobs: Mapping[str, Any] = workflow.get("jobs") or {}
    printers = [name for name, job in jobs.items()
                if "python -m mlfreeze.release.matrix" in _runs(job) and "--github-output" in _runs(job)]
    if not printers:
        problems.append("no job runs `python -m mlfreeze.release.matrix --github-output`")
    for name in printers:
        if "outputs.matrix" not in str((jobs[name].get("outputs") or {}).get("matrix", "")):
            problems.append(f"job {name!r} prints the matrix but has no `outputs.matrix` from that step")
    expected = {f"${{{{ fromJSON(needs.{name}.outputs.matrix) }}}}" for name in printers}
    builders = [name for name, job in jobs.items()
                if str((job.get("strategy") or {}).get("matrix", "")).strip() in expected]
    if not builders:
        problems.append("no job has `strategy.matrix: ${{ fromJSON(needs.<matrix job>.outputs.matrix) }}`")
    for name in builders:
        job = jobs[name]
        if str(job.get("runs-on", "")).replace(" ", "") != "${{matrix.runner}}":
            problems.append(f"job {name!r} must run on ${{{{ matrix.runner }}}} (the profile's runner)")
        if str(job.get("container", "")).replace(" ", "") != "${{matrix.container}}":
            problems.append(f"job {name!r} must run in ${{{{ matrix.container }}}} (the profile's build container: "
                            "Linux bundles are built for its glibc)")
        env = {k: str(v).replace(" ", "") for k, v in (job.get("env") or {}).items()}
        if env.get("SESSION") != "${{matrix.session}}" or 'nox -s "$SESSION"' not in _runs(job):
            problems.append(f"job {name!r} must run `nox -s \"$SESSION\"` with SESSION: ${{{{ matrix.session }}}}")
    triggers = workflow.get("on", workflow.get(True)) or {}  # YAML 1.1 reads a bare `on` as True
    dispatch = (triggers.get("workflow_dispatch") or {}) if isinstance(triggers, Mapping) else {}
    platform_input = (dispatch.get("inputs") or {}).get("platform") or {}
    options = list(platform_input.get("options") or [])
    wanted = [ALL, *sorted(profiles)]
    if platform_input.get("type") == "choice" and options != wanted:
        missing = sorted(set(wanted) - set(options))
        extra = sorted(set(options) - set(wanted))
        problems.append(f"workflow_dispatch input 'platform' options {options} must be {wanted} "
                        f"(missing: {missing or 'none'}; not a profile: {extra or 'none'})")
    if not platform_input:
        problems.append("workflow_dispatch has no 'platform' input (to build one platform)")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlfreeze.release.matrix", description=__doc__.splitlines()[0])
    parser.add_argument("--platform", default=ALL, help=f"one profile, or {ALL!r} (default)")
    parser.add_argument("--platforms-dir", type=Path, default=PROFILE_DIR, help="where the profiles are")
    parser.add_argument("--names", action="store_true", help="print the profile names, one a line")
    parser.add_argument("--github-output", action="store_true",
                        help="also append matrix=<json>, images=<json> and has_images=true|false to the file "
                             "named by $GITHUB_OUTPUT")
    parser.add_argument("--project", type=Path, default=None, metavar="DIR",
                        help="the project whose [tool.mlfreeze.serve] decides the image matrix (default: the one "
                             "around the working directory)")
    args = parser.parse_args(argv)
    try:
        matrix = build_matrix(all_profiles(args.platforms_dir.resolve()), args.platform)
        if args.names:
            print("\n".join(e["platform"] for e in matrix["include"]))
            return 0
        line = render(matrix)
        print(line)
        if args.github_output:
            target = os.environ.get("GITHUB_OUTPUT")
            if not target:
                raise UsageError("--github-output needs $GITHUB_OUTPUT (set by GitHub Actions)")
            images = image_matrix(matrix, serves=project_serves(args.project))
            with open(target, "a", encoding="utf-8") as f:
                f.write(f"matrix={line}\n")
                f.write(f"images={render(images)}\n")
                f.write(f"has_images={'true' if images['include'] else 'false'}\n")
    except MlfreezeError as exc:
        print(f"mlfreeze.release.matrix: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
