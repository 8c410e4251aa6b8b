"""The pure half of every stage: what a build of one profile would do, as data.

``make_plan`` reads only TOML files; it imports nothing from the ML stack and starts
nothing, so the plan of ``mac-arm64`` can be inspected (and snapshot-tested) on Linux.
The nox build sessions run exactly the install commands listed here.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from mlfreeze.config import ProjectConfig, load_config
from mlfreeze.hostinfo import exe_suffix
from mlfreeze.platforms.profiles import Profile, Stack, load_profile, load_stack

CONSTRAINTS_FILE = "build/constraints-{platform}.txt"


@dataclass(frozen=True, kw_only=True)
class Step:
    stage: str  # install | doctor | fetch | verify | freeze | selftest | sizes | release
    title: str
    command: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Bundle:
    flavor: str
    spec: str
    path: str
    executables: tuple[str, ...]
    models: bool


@dataclass(frozen=True, kw_only=True)
class Plan:
    platform: str
    description: str
    session: str
    host: str
    runner: str
    accelerator: str
    python: str
    torch: str
    torchvision: str
    torch_index: str
    cuda: str
    onnxruntime: str
    expected_providers: tuple[str, ...]
    constraints_file: str
    constraints: tuple[str, ...]
    model_set: str
    archive_format: str
    bundles: tuple[Bundle, ...]
    reports: tuple[str, ...]
    steps: tuple[Step, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def constraint_lines(profile: Profile) -> tuple[str, ...]:
    """Pins that keep every step after the first from moving torch or onnxruntime."""
    return (
        f"torch=={profile.torch.version}",
        f"torchvision=={profile.torch.torchvision}",
        f"{profile.onnxruntime.package}=={profile.onnxruntime.version}",
        *profile.constraints,
    )


def install_steps(profile: Profile, stack: Stack, env: Mapping[str, str] | None = None) -> tuple[Step, ...]:
    """The pip commands, in order, that give an environment matching ``profile``."""
    constraints = CONSTRAINTS_FILE.format(platform=profile.name)
    index = profile.torch_index(env)
    torch_cmd = ["pip", "install", f"torch=={profile.torch.version}", f"torchvision=={profile.torch.torchvision}"]
    if index:
        torch_cmd += ["--index-url", index]
    ort = f"{profile.onnxruntime.package}=={profile.onnxruntime.version}"
    source = f"from {index}" if index else "from PyPI"
    return (
        Step(stage="install", title=f"torch and torchvision {source}", command=tuple(torch_cmd)),
        Step(stage="install", title=f"the one onnxruntime distribution ({profile.onnxruntime.package})",
             command=("pip", "install", ort, "-c", constraints)),
        Step(stage="install",
             title="insightface without its dependencies (its `onnxruntime` requirement would install a "
                   f"second distribution of the onnxruntime module beside {profile.onnxruntime.package})",
             command=("pip", "install", "--no-deps", *stack.no_deps)),
        Step(stage="install", title="the rest of the ML stack and insightface's other requirements",
             command=("pip", "install", *stack.requirements, *stack.no_deps_requirements, "-c", constraints)),
        Step(stage="install", title="mlfreeze and the app, with PyInstaller (never the `ml` extra)",
             command=("pip", "install", ".[freeze]", "-c", constraints)),
    )


def make_plan(profile: Profile, config: ProjectConfig, *, model_set: str | None = None,
              flavors: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Plan:
    stack = load_stack()
    model_set = model_set or config.model_set
    flavors = tuple(flavors or config.flavors)
    exe = exe_suffix(profile.host_os)
    p = profile.name
    bundles = tuple(
        Bundle(flavor=f, spec=f"specs/{f}.spec", path=f"dist/{config.bundle_name(p, f)}",
               executables=(f"{config.app}{exe}",) + ((f"{config.app}-selftest{exe}",) if f == "full" else ()),
               models=f == "full")
        for f in flavors
    )
    # one verify report per flavor that ships models, handed to that flavor's freeze
    verify_reports = {b.flavor: (f"dist/reports/verify-{p}-{b.flavor}.json", f"dist/reports/verify-{p}-{b.flavor}.xml")
                      for b in bundles if b.models}
    sizes_reports = (f"dist/reports/sizes-{p}.json", f"dist/reports/sizes-{p}.md", f"dist/reports/sizes-{p}.html")
    reports = (*(r for pair in verify_reports.values() for r in pair), *sizes_reports)
    steps = [*install_steps(profile, stack, env)]
    steps.append(Step(stage="doctor", title="the installed environment matches the profile",
                      command=("mlfreeze", "doctor", "--platform", p)))
    steps.append(Step(stage="fetch", title=f"download and checksum model set '{model_set}'",
                      command=("mlfreeze", "fetch", "--set", model_set)))
    for flavor, (report, junit) in verify_reports.items():
        steps.append(Step(stage="verify", title=f"functional verification of the {flavor} bundle's models "
                                                "(fails the build on bad embeddings)",
                          command=("mlfreeze", "verify", "--set", model_set, "--platform", p, "--flavor", flavor,
                                   "--report", report, "--junit", junit)))
    for b in bundles:
        verify_arg = ("--verify-report", verify_reports[b.flavor][0]) if b.flavor in verify_reports else ()
        steps.append(Step(stage="freeze", title=f"freeze the {b.flavor} bundle ({b.spec})",
                          command=("mlfreeze", "freeze", "--platform", p, "--flavor", b.flavor, "--set", model_set,
                                   *verify_arg)))
        checks = [(f"{b.path}/{config.app}{exe}", "--health")]
        if b.flavor == "full":
            checks.insert(0, (f"{b.path}/{config.app}-selftest{exe}", "--json"))
        for exe_path, arg in checks:
            steps.append(Step(stage="selftest", title=f"run the frozen {b.flavor} bundle in a clean environment",
                              command=(exe_path, arg)))
    steps.append(Step(stage="sizes", title="size report, waste finder and budgets",
                      command=("mlfreeze", "sizes", *(b.path for b in bundles), "--json", sizes_reports[0],
                               "--markdown", sizes_reports[1], "--html", sizes_reports[2])))
    steps.append(Step(stage="release", title="archives, SHA256SUMS, release manifest (release workflow)",
                      command=("mlfreeze", "release", "dist")))
    return Plan(
        platform=p, description=profile.description, session=profile.session,
        host=f"{profile.host_os}-{profile.host_arch}", runner=profile.runner, accelerator=profile.accelerator,
        python=profile.python, torch=profile.torch.version, torchvision=profile.torch.torchvision,
        torch_index=profile.torch_index(env) or "PyPI", cuda=profile.torch.cuda or "none",
        onnxruntime=f"{profile.onnxruntime.package}=={profile.onnxruntime.version}",
        expected_providers=profile.onnxruntime.providers,
        constraints_file=CONSTRAINTS_FILE.format(platform=p), constraints=constraint_lines(profile),
        model_set=model_set, archive_format=profile.archive_format, bundles=bundles, reports=reports,
        steps=tuple(steps),
    )


def render_text(plan: Plan) -> str:
    lines = [
        f"mlfreeze plan for {plan.platform}: {plan.description}",
        f"  build host      {plan.host} (GitHub runner {plan.runner}), nox -s {plan.session}",
        f"  torch           {plan.torch} + torchvision {plan.torchvision} from {plan.torch_index}"
        f" (CUDA {plan.cuda}, accelerator {plan.accelerator})",
        f"  onnxruntime     {plan.onnxruntime}; expected providers: {', '.join(plan.expected_providers)}",
        f"  constraints     {plan.constraints_file}: {'; '.join(plan.constraints)}",
        f"  models          set '{plan.model_set}'",
    ]
    for b in plan.bundles:
        lines.append(f"  bundle {b.flavor:<8} {b.path}/ ({b.spec}; {', '.join(b.executables)}"
                     f"{'; models/' if b.models else ''}) -> {plan.archive_format}")
    lines.append(f"  reports         {', '.join(plan.reports)}")
    lines.append("steps:")
    for i, s in enumerate(plan.steps, 1):
        lines.append(f"  {i:>2}. [{s.stage}] {s.title}")
        lines.append(f"      $ {shlex.join(s.command)}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    plan = make_plan(load_profile(args.platform), load_config(), model_set=args.model_set,
                     flavors=(args.flavor,) if args.flavor else None)
    sys.stdout.write((plan.to_json() if args.json else render_text(plan)) + "\n")
    return 0
