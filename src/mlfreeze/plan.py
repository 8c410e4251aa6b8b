"""The pure half of every stage: what a build of one profile would do, as data.

``make_plan`` reads only TOML files; it imports nothing from the ML stack and starts
nothing, so the plan of ``mac-arm64`` can be inspected (and snapshot-tested) on Linux.
The nox build sessions (mlfreeze.sessions) run exactly the install commands listed here: the
profile's hash-checked lock (locks/, written by ``mlfreeze lock``), then mlfreeze and the project.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mlfreeze import __version__
from mlfreeze.hostinfo import exe_suffix
from mlfreeze.platforms.profiles import Profile, load_profile, load_stack
from mlfreeze.project.config import ProjectConfig, load_config
from mlfreeze.project.lock import LOCK_DIR, lock_name, plan_lock, variant_for
from mlfreeze.schema import read_toml
from mlfreeze_runtime.buildinfo import MODEL_FLAVORS

# What `mlfreeze build` runs, in order (mlfreeze.build.Stages has one field per name). A plan adds the
# install steps before (the nox session runs them) and the release after (the release workflow).
BUILD_STAGES = ("doctor", "fetch", "export", "verify", "freeze", "selftest", "sizes")
PIPELINE = ("install", *BUILD_STAGES, "release")


@dataclass(frozen=True, kw_only=True)
class Step:
    stage: str  # one of PIPELINE
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
    container: str  # the image release.yml builds in ("" = the runner itself); Linux: a manylinux image
    glibc_floor: str | None  # Linux: the newest glibc a bundle may need (the audit refuses more)
    signing: str  # how the freeze signs the bundles ("unsigned", "authenticode", "codesign+notarize")
    accelerator: str
    python: str  # the build interpreter (mlfreeze.project.pythons)
    python_reason: str  # why that one: the profile's default, requires-python, [tool.mlfreeze] python
    torch: str
    torchvision: str
    torch_index: str
    cuda: str
    onnxruntime: str
    onnxruntime_used: bool  # the faces part, or CLIP as ONNX in a slim flavor; else not installed
    expected_providers: tuple[str, ...]
    uses: tuple[str, ...]
    lock_file: str
    lock_requirements: tuple[str, ...]  # what the lock is resolved from (`mlfreeze lock`)
    lock_overrides: tuple[str, ...]
    constraints: tuple[str, ...]
    model_set: str
    archive_format: str
    bundles: tuple[Bundle, ...]
    reports: tuple[str, ...]
    steps: tuple[Step, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def is_mlfreeze_project(config: ProjectConfig) -> bool:
    """True for the mlfreeze checkout itself (its project is mlfreeze: one install step)."""
    return bool(read_toml(config.pyproject).get("project", {}).get("name") == "mlfreeze")


def default_mlfreeze_source() -> str:
    """``mlfreeze==<this version>``: the package index's copy of the running mlfreeze."""
    return f"mlfreeze=={__version__}"


def noxfile_mlfreeze_source(root: Path) -> str | None:
    """Where the project's ``noxfile.py`` installs mlfreeze from: the literal ``mlfreeze=`` argument of
    its ``make_sessions(...)`` call (what ``mlfreeze init`` writes: ``mlfreeze==0.1.0`` or a wheel in
    ``build/``), read with :mod:`ast`; None without a noxfile, that call or a literal there."""
    import ast

    try:
        tree = ast.parse((root / "noxfile.py").read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "make_sessions":
            for kw in node.keywords:
                if kw.arg == "mlfreeze" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                    return kw.value.value
    return None


def install_steps(profile: Profile, config: ProjectConfig, *, flavors: Sequence[str] = (),
                  mlfreeze_source: str | None = None) -> tuple[Step, ...]:
    """The pip commands, in order, that give an environment matching ``profile`` for ``config``.

    First the hash-checked lock (the complete closure, hence ``--no-deps``), then mlfreeze and the
    project themselves without dependencies, so nothing outside the lock is ever resolved
    (``--force-reinstall``: a rebuilt wheel of the same version still replaces the old one)."""
    lock = f"{LOCK_DIR}/{lock_name(profile.name, variant_for(flavors))}"
    steps = [Step(stage="install", title=f"the locked build environment ({lock}: every distribution pinned "
                                         "and hash-checked)",
                  command=("pip", "install", "--require-hashes", "--no-deps", "-r", lock))]
    if is_mlfreeze_project(config):
        steps.append(Step(stage="install", title="mlfreeze and the example app from this checkout, without "
                                                 "dependencies (they are in the lock)",
                          command=("pip", "install", "--no-deps", "--force-reinstall", ".")))
    else:
        source = mlfreeze_source or default_mlfreeze_source()
        steps.append(Step(stage="install", title=f"mlfreeze ({source}), without dependencies (they are in the lock)",
                          command=("pip", "install", "--no-deps", "--force-reinstall", source)))
        steps.append(Step(stage="install", title="the project itself, without dependencies (they are in the lock)",
                          command=("pip", "install", "--no-deps", "--force-reinstall", ".")))
    return tuple(steps)


def make_plan(profile: Profile, config: ProjectConfig, *, model_set: str | None = None,
              flavors: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
              mlfreeze_source: str | None = None) -> Plan:
    from mlfreeze.project.pythons import build_python

    model_set = model_set or config.model_set
    flavors = tuple(flavors or config.flavors)
    python = build_python(config, profile)
    lock = plan_lock(profile, load_stack(), config, variant=variant_for(flavors), env=env)
    exe = exe_suffix(profile.host_os)
    p = profile.name
    bundles = tuple(
        Bundle(flavor=f, spec=f"mlfreeze/specs/{f}.spec", path=f"dist/{config.bundle_name(p, f)}",
               executables=(f"{config.app}{exe}",) + ((f"{config.app}-selftest{exe}",) if f in MODEL_FLAVORS else ())
               + (f"{config.app}-update{exe}",),
               models=f in MODEL_FLAVORS)
        for f in flavors
    )
    # one verify report per flavor that ships models, handed to that flavor's freeze
    verify_reports = {b.flavor: (f"dist/reports/verify-{p}-{b.flavor}.json", f"dist/reports/verify-{p}-{b.flavor}.xml")
                      for b in bundles if b.models}
    sizes_reports = (f"dist/reports/sizes-{p}.json", f"dist/reports/sizes-{p}.md", f"dist/reports/sizes-{p}.html")
    reports = (*(r for pair in verify_reports.values() for r in pair), *sizes_reports)
    steps = [*install_steps(profile, config, flavors=flavors, mlfreeze_source=mlfreeze_source)]
    steps.append(Step(stage="doctor", title="the installed environment matches the profile",
                      command=("mlfreeze", "doctor", "--platform", p,
                               *(("--flavors", "slim") if variant_for(flavors) == "slim" else ()))))
    steps.append(Step(stage="fetch", title=f"download and checksum model set '{model_set}'",
                      command=("mlfreeze", "fetch", "--set", model_set)))
    if "slim" in flavors and "clip" in config.uses:
        steps.append(Step(stage="export", title="CLIP towers to ONNX for the slim bundle (pinned exports: no-op, "
                                                "no torch; else cached by source sha256 and versions)",
                          command=("mlfreeze", "export", "--set", model_set)))
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
    for b in bundles:
        app_exe = f"{b.path}/{config.app}{exe}"
        # as mlfreeze.bundle.selftest runs them: the bundle's self-test (which starts a server's bundle
        # and probes it), then the app's own entry by its contract: serve (a bundle without models: up to
        # its liveness path), smoke, or --health when the project declares neither
        checks: list[tuple[str, tuple[str, ...]]] = []
        if b.flavor in MODEL_FLAVORS:
            checks.append(("run the bundle's self-test (models, embeddings, the app's own code on the probes)",
                           (f"{b.path}/{config.app}-selftest{exe}", "--json")))
        serve, smoke = config.contract.serve, config.contract.smoke
        if serve is not None and b.flavor not in MODEL_FLAVORS:
            checks.append((f"start the server on 127.0.0.1 until GET {serve.live or serve.ready} answers, "
                           "then SIGTERM", (app_exe, *serve.args)))
        if smoke is not None:
            checks.append((f"the smoke command must exit {smoke.exit_code}", (app_exe, *smoke.args)))
        if serve is None and smoke is None:
            checks.append(("the app's --health must say whether ML is available", (app_exe, "--health")))
        for title, command in checks:
            steps.append(Step(stage="selftest", title=f"the frozen {b.flavor} bundle in a clean environment: {title}",
                              command=command))
    steps.append(Step(stage="sizes", title="size report, waste finder and budgets",
                      command=("mlfreeze", "sizes", *(b.path for b in bundles), "--json", sizes_reports[0],
                               "--markdown", sizes_reports[1], "--html", sizes_reports[2])))
    steps.append(Step(stage="release", title="archives, SHA256SUMS, release manifest (release workflow)",
                      command=("mlfreeze", "release", "dist")))
    return Plan(
        platform=p, description=profile.description, session=profile.session,
        host=f"{profile.host_os}-{profile.host_arch}", runner=profile.runner, container=profile.container,
        glibc_floor=profile.glibc_floor, signing=_signing(config, profile.host_os), accelerator=profile.accelerator,
        python=python.version, python_reason=python.reason, torch=profile.torch.version,
        torchvision=profile.torch.torchvision,
        torch_index=profile.torch_index(env) or "PyPI", cuda=profile.torch.cuda or "none",
        onnxruntime=f"{profile.onnxruntime.package}=={profile.onnxruntime.version}",
        onnxruntime_used="faces" in config.uses or ("slim" in flavors and "clip" in config.uses),
        expected_providers=profile.onnxruntime.providers,
        uses=config.uses, lock_file=f"{LOCK_DIR}/{lock_name(p, lock.variant)}", lock_requirements=lock.requirements,
        lock_overrides=lock.overrides, constraints=profile.constraints,
        model_set=model_set, archive_format=profile.archive_format, bundles=bundles, reports=reports,
        steps=tuple(steps),
    )


def _signing(config: ProjectConfig, host_os: str) -> str:
    """What [tool.mlfreeze.signing] does to this OS's bundles, in a word or two."""
    cfg = config.signing.for_os(host_os)
    if cfg is None:
        return "unsigned"
    if host_os == "windows":
        return "authenticode"
    return "codesign+notarize" if getattr(cfg, "notarize", False) else "codesign"


def render_text(plan: Plan) -> str:
    where = f"GitHub runner {plan.runner}" + (f", container {plan.container}" if plan.container else "")
    lines = [
        f"mlfreeze plan for {plan.platform}: {plan.description}",
        f"  build host      {plan.host} ({where}), nox -s {plan.session}",
        *([f"  glibc floor     {plan.glibc_floor} at most (mlfreeze audit refuses a bundle that needs a newer glibc)"]
          if plan.glibc_floor else []),
        f"  signing         {plan.signing}" + (" (before RECORD is written)" if plan.signing != "unsigned" else
                                               " (Linux binaries are not code-signed; SHA256SUMS and the signed "
                                               "update metadata cover them)" if plan.host.startswith("linux") else
                                               " ([tool.mlfreeze.signing] has no table for this OS)"),
        f"  python          {plan.python} ({plan.python_reason})",
        (f"  torch           {plan.torch} + torchvision {plan.torchvision} from {plan.torch_index}"
         f" (CUDA {plan.cuda}, accelerator {plan.accelerator})" if not plan.lock_file.endswith("-slim.txt") else
         f"  torch           not installed: a slim-only build (CLIP as ONNX; accelerator {plan.accelerator})"),
        (f"  onnxruntime     {plan.onnxruntime}; expected providers: {', '.join(plan.expected_providers)}"
         if plan.onnxruntime_used else
         f"  onnxruntime     not used (uses: {', '.join(plan.uses)}; no slim flavor); the lock keeps it out"),
        f"  uses            {', '.join(plan.uses)}",
        f"  lock            {plan.lock_file} from: {'; '.join(plan.lock_requirements)}",
        f"  overrides       {'; '.join(plan.lock_overrides)}",
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
    from mlfreeze.models.manifest import check_model_set  # TOML only

    config = load_config()
    # an unknown set (--set, or [tool.mlfreeze] model_set) is refused here as `build` refuses it (exit 2)
    check_model_set(config, None, args.model_set or config.model_set)
    plan = make_plan(load_profile(args.platform), config, model_set=args.model_set,
                     flavors=(args.flavor,) if args.flavor else None,
                     mlfreeze_source=noxfile_mlfreeze_source(config.pyproject.parent))  # as its sessions install
    sys.stdout.write((plan.to_json() if args.json else render_text(plan)) + "\n")
    return 0
