"""``mlfreeze doctor``: does the installed environment match the profile?

Run inside the build environment. Each check yields one line; a mismatch is a line that
says what is installed, what the profile wants, and how to fix it. Any mismatch -> exit 2.
Reads distribution metadata first (cheap), then imports the ML stack to prove it works.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import importlib.util
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from mlfreeze.errors import EnvironmentMismatch
from mlfreeze.hostinfo import cpu_flags, require_host
from mlfreeze.platforms.profiles import Profile, Stack, canonical_name, load_profile, load_stack, requirement_name
from mlfreeze.project.config import ProjectConfig


@dataclass(frozen=True, kw_only=True)
class Finding:
    ok: bool
    check: str
    detail: str
    note: bool = False  # informational: passed, but something could not be exercised here


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _same_release(installed: str, wanted: str) -> bool:
    """``2.14.1+cu130`` is release ``2.14.1``: local build labels are the index's business."""
    try:
        return Version(Version(installed).base_version) == Version(wanted)
    except InvalidVersion:
        return False


def check_torch(profile: Profile) -> Iterator[Finding]:
    installed = _version("torch")
    if installed is None:
        yield Finding(ok=False, check="torch", detail=f"not installed; the profile wants torch {profile.torch.version}")
        return
    if not _same_release(installed, profile.torch.version):
        yield Finding(ok=False, check="torch",
                      detail=f"{installed} installed; the profile wants {profile.torch.version}")
        return
    import torch

    cuda = torch.version.cuda
    if profile.torch.cuda:
        if not cuda:
            yield Finding(ok=False, check="torch build",
                          detail=f"torch {installed} is a CPU build; the profile wants CUDA {profile.torch.cuda} "
                                 f"(index {profile.torch_index() or 'PyPI'})")
            return
        if not (cuda == profile.torch.cuda or cuda.startswith(profile.torch.cuda + ".")):
            yield Finding(ok=False, check="torch build",
                          detail=f"torch {installed} is built for CUDA {cuda}; "
                                 f"the profile wants CUDA {profile.torch.cuda}")
            return
    elif cuda:
        yield Finding(ok=False, check="torch build",
                      detail=f"torch {installed} is a CUDA {cuda} build; the profile ({profile.accelerator}) wants a "
                             f"build without CUDA from {profile.torch_index() or 'PyPI'}")
        return
    yield Finding(ok=True, check="torch", detail=f"{installed} ({'CUDA ' + cuda if cuda else 'no CUDA'})")
    if profile.accelerator == "cuda":
        if torch.cuda.is_available():
            yield Finding(ok=True, check="cuda device", detail=torch.cuda.get_device_name(0))
        else:
            yield Finding(ok=True, note=True, check="cuda device",
                          detail="no CUDA device on this machine: the CUDA build is installed but cannot be exercised "
                                 "here (it runs on the CPU)")
    if profile.accelerator == "mps":
        if not torch.backends.mps.is_built():
            yield Finding(ok=False, check="torch build", detail=f"torch {installed} was built without MPS")
        elif not torch.backends.mps.is_available():
            yield Finding(ok=True, note=True, check="mps device", detail="MPS is built in but not available here")


def check_torchvision(profile: Profile) -> Iterator[Finding]:
    installed = _version("torchvision")
    if installed is None or not _same_release(installed, profile.torch.torchvision):
        yield Finding(ok=False, check="torchvision",
                      detail=f"{installed or 'not installed'}; the profile wants {profile.torch.torchvision}")
        return
    try:
        import torch
        import torchvision.ops

        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
        keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()
    except Exception as exc:  # the classic: "operator torchvision::nms does not exist"
        yield Finding(ok=False, check="torchvision",
                      detail=f"{installed} does not work beside torch {_version('torch')}: {exc}".splitlines()[0])
        return
    if keep != [0, 2]:
        yield Finding(ok=False, check="torchvision", detail=f"nms gave {keep}, expected [0, 2]")
        return
    yield Finding(ok=True, check="torchvision", detail=f"{installed} (nms works beside torch)")


def installed_distributions() -> dict[str, str]:
    """``{canonical name: version}`` of every installed distribution (the first one found wins,
    as for imports)."""
    found: dict[str, str] = {}
    for dist in md.distributions():
        name = canonical_name(dist.metadata["Name"] or "")
        if name:
            found.setdefault(name, dist.version)
    return found


def planned_members(profile: Profile, stack: Stack) -> dict[str, str]:
    """``{family: distribution}`` for every family the install plan of ``profile`` installs a member of."""
    names = [profile.onnxruntime.package, "torch", "torchvision",
             *(requirement_name(r) for r in stack.requirements + stack.no_deps + stack.no_deps_requirements)]
    planned: dict[str, str] = {}
    for name in names:
        family = stack.family_of(name)
        if family is not None:
            planned.setdefault(family, canonical_name(name))
    return planned


def family_findings(installed: Mapping[str, str], families: Mapping[str, Sequence[str]],
                    planned: Mapping[str, str]) -> list[Finding]:
    """One failing finding per family with two or more members in ``installed`` (``{name: version}``),
    naming each and saying which to keep (``planned[family]``, the one the plan installs)."""
    findings = []
    for module, members in families.items():
        present = [m for m in members if m in installed]
        if len(present) < 2:
            continue
        listed = ", ".join(f"{m} {installed[m]}" for m in present)
        keep = planned.get(module)
        if keep in present:
            fix = f"keep only {keep} (pip uninstall -y {' '.join(m for m in present if m != keep)})"
        else:
            fix = "keep only one of them" + (f" ({keep} is the one the plan installs)" if keep else "")
        findings.append(Finding(ok=False, check=module,
                                detail=f"{len(present)} distributions of the {module} module are installed "
                                       f"({listed}); they overwrite each other's files: {fix}"))
    return findings


def check_families(profile: Profile) -> Iterator[Finding]:
    stack = load_stack()
    findings = family_findings(installed_distributions(), stack.families, planned_members(profile, stack))
    yield from findings
    if not findings:
        yield Finding(ok=True, check="distribution families",
                      detail=f"at most one distribution each of {', '.join(stack.families)}")


def check_onnxruntime(profile: Profile) -> Iterator[Finding]:
    wanted = profile.onnxruntime
    installed = installed_distributions()
    present = {m: installed[m] for m in load_stack().families["onnxruntime"] if m in installed}
    if len(present) > 1:
        return  # a mix: check_families says so and which to keep
    if present.get(wanted.package) is None or not _same_release(present[wanted.package], wanted.version):
        got = ", ".join(f"{k} {v}" for k, v in present.items()) or "none"
        yield Finding(ok=False, check="onnxruntime",
                      detail=f"installed: {got}; the profile wants {wanted.package}=={wanted.version}")
        return
    import onnxruntime

    available = onnxruntime.get_available_providers()
    missing = [p for p in wanted.providers if p not in available]
    if missing:
        yield Finding(ok=False, check="onnxruntime providers",
                      detail=f"{wanted.package} {present[wanted.package]} lacks {', '.join(missing)} "
                             f"(available: {', '.join(available)})")
        return
    yield Finding(ok=True, check="onnxruntime", detail=f"{wanted.package} {present[wanted.package]}; "
                                                         f"providers {', '.join(wanted.providers)} built in")
    yield from _exercise_providers(profile, available)


def _exercise_providers(profile: Profile, available: list[str]) -> Iterator[Finding]:
    """Where the hardware is present, prove a session really runs on the accelerator provider."""
    accel = [p for p in profile.onnxruntime.providers if p != "CPUExecutionProvider"]
    if not accel:
        return
    hardware = False
    if importlib.util.find_spec("torch") is None:  # a torch-free (slim) environment: no hardware probe here
        pass
    elif profile.accelerator == "cuda":
        import torch

        hardware = torch.cuda.is_available()
    elif profile.accelerator == "mps":
        import torch

        hardware = torch.backends.mps.is_available()
    if not hardware:
        yield Finding(ok=True, note=True, check="onnxruntime providers",
                      detail=f"{', '.join(accel)} cannot be exercised: no {profile.accelerator.upper()} hardware here")
        return
    import onnxruntime
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=list(profile.onnxruntime.providers))
    used = session.get_providers()
    if used[0] != accel[0]:
        yield Finding(ok=False, check="onnxruntime providers",
                      detail=f"a session asked for {accel[0]} runs on {', '.join(used)} "
                             "(missing CUDA/cuDNN libraries?)")
    else:
        yield Finding(ok=True, check="onnxruntime providers", detail=f"a session runs on {used[0]}")


# [tool.mlfreeze] uses -> the checks that part needs (a CLIP-only app installs no onnxruntime)
PART_IMPORTS = {"clip": (("open_clip", "open-clip-torch"),), "faces": (("insightface", "insightface"),),
                "faiss": (("faiss", "faiss-cpu"),)}
ALL_USES = ("clip", "faces", "faiss")
# a torch-free (slim-only) environment runs CLIP as ONNX: onnxruntime and the tokenizer's text cleaning
TORCH_FREE_CLIP_IMPORTS = (("onnxruntime", ""), ("ftfy", "ftfy"), ("regex", "regex"))


def check_imports(profile: Profile, uses: tuple[str, ...] = ALL_USES, *, torch_free: bool = False) -> Iterator[Finding]:
    table = {**PART_IMPORTS, "clip": TORCH_FREE_CLIP_IMPORTS} if torch_free else PART_IMPORTS
    for module, dist in (pair for part in uses for pair in table.get(part, ())):
        dist = dist or profile.onnxruntime.package
        try:
            importlib.import_module(module)
        except Exception as exc:
            yield Finding(ok=False, check=module, detail=f"cannot import: {exc}".splitlines()[0])
        else:
            yield Finding(ok=True, check=module, detail=f"{dist} {_version(dist) or '?'}")


@dataclass(frozen=True, kw_only=True)
class FaissLevel:
    """One instruction-set level faiss can be built for: its name in faiss's own vocabulary
    (``faiss.SIMDConfig`` level names and ``get_compile_options()``), the module a per-level
    wheel loads for it (faiss/loader.py), and the CPU flags (Linux names) the build needs."""

    name: str
    module: str | None  # None: only dynamic-dispatch builds (faiss >= 1.14) have this level
    needs: frozenset[str]


_AVX512 = frozenset({"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"})  # faiss's -mavx512* set
# Best first. faiss-cpu 1.8-1.13 wheels ship swigfaiss{,_avx2,_avx512} for x86-64 and load the best
# one the CPU allows; newer source builds add _avx512_spr (Sapphire Rapids: avx512_fp16), Arm ones
# _sve; faiss >= 1.14 wheels build one module with dynamic dispatch ("DD" in the compile options).
FAISS_LEVELS: tuple[FaissLevel, ...] = (
    FaissLevel(name="AVX512_SPR", module="swigfaiss_avx512_spr", needs=_AVX512 | {"avx512_fp16"}),
    FaissLevel(name="AVX512_VPOPCNT", module=None, needs=_AVX512 | {"avx512_vpopcntdq"}),
    FaissLevel(name="AVX512", module="swigfaiss_avx512", needs=_AVX512),
    FaissLevel(name="AVX2", module="swigfaiss_avx2", needs=frozenset({"avx2", "fma"})),
    FaissLevel(name="ARM_SVE", module="swigfaiss_sve", needs=frozenset({"sve"})),
    FaissLevel(name="NONE", module="swigfaiss", needs=frozenset()),
)
_GENERIC = FAISS_LEVELS[-1]


def _level_label(level: FaissLevel) -> str:
    return "generic" if level is _GENERIC else level.name


def best_faiss_level(flags: frozenset[str], available: Iterable[str]) -> FaissLevel:
    """The best level among ``available`` (level names) whose needs ``flags`` meet; generic at worst."""
    names = set(available)
    return next(lv for lv in FAISS_LEVELS if (lv.name in names and lv.needs <= flags) or lv is _GENERIC)


def judge_faiss(*, flags: frozenset[str] | None, shipped: Iterable[str], loaded: Iterable[str],
                compile_options: str, dispatched: str | None = None) -> Finding:
    """Was the best faiss build for this CPU loaded? Pure: all facts are arguments.

    ``flags``: the CPU's flags (hostinfo.cpu_flags(); None: unknown); ``shipped``: the ``swigfaiss*``
    modules in the installed faiss package; ``loaded``: the ``swigfaiss*`` modules imported (names
    without ``faiss.``); ``compile_options``: ``faiss.get_compile_options()``; ``dispatched``: with
    dynamic dispatch, ``faiss.SIMDConfig.get_level_name()``.
    """
    check = "faiss build"
    if flags is None:
        return Finding(ok=True, note=True, check=check, detail="cannot read this CPU's flags; not checked")
    tokens = set(compile_options.split())
    hint = "unset FAISS_OPT_LEVEL / FAISS_DISABLE_CPU_FEATURES, or reinstall faiss-cpu"
    if "DD" in tokens:  # one module, the level is chosen at run time
        expected = best_faiss_level(flags, tokens)
        if dispatched is None:
            return Finding(ok=True, note=True, check=check,
                           detail=f"dynamic dispatch ({compile_options.strip()}); the level in use is not reported")
        rank = {lv.name: i for i, lv in enumerate(FAISS_LEVELS)}
        if rank.get(dispatched, len(FAISS_LEVELS)) <= rank[expected.name]:
            return Finding(ok=True, check=check, detail=f"dynamic dispatch runs {dispatched} code, the best this CPU "
                                                        f"allows of {compile_options.strip()}")
        return Finding(ok=False, check=check,
                       detail=f"this CPU allows faiss's {_level_label(expected)} code but dynamic dispatch runs "
                              f"{dispatched} ({compile_options.strip()}); {hint}")
    by_module = {lv.module: lv for lv in FAISS_LEVELS if lv.module}
    expected = best_faiss_level(flags, (by_module[m].name for m in shipped if m in by_module))
    loaded_levels = [by_module[m] for m in loaded if m in by_module]
    if not loaded_levels:
        return Finding(ok=False, check=check, detail=f"no faiss build module is loaded; expected {expected.module}")
    got = min(loaded_levels, key=FAISS_LEVELS.index)  # a generic swigfaiss may sit beside the real one
    if got is expected:
        return Finding(ok=True, check=check, detail=f"{got.module} loaded: the best build for this CPU "
                                                    f"({compile_options.strip() or 'no options'})")
    return Finding(ok=False, check=check,
                   detail=f"this CPU allows faiss's {_level_label(expected)} build ({expected.module}) but "
                          f"{got.module} ({_level_label(got)}) was loaded; {hint}")


def check_faiss_build(profile: Profile) -> Iterator[Finding]:
    if "faiss" not in sys.modules:
        return
    import faiss

    package = Path(faiss.__file__).parent
    shipped = {p.name.split(".")[0] for p in package.glob("swigfaiss*.py")}
    loaded = {m.split(".", 1)[1] for m in sys.modules if m.startswith("faiss.swigfaiss")}
    options = faiss.get_compile_options() if hasattr(faiss, "get_compile_options") else ""
    dispatched = None
    config = getattr(faiss, "SIMDConfig", None)
    if config is not None and hasattr(config, "get_level_name"):
        dispatched = str(config.get_level_name())
    yield judge_faiss(flags=cpu_flags(), shipped=shipped, loaded=loaded, compile_options=options,
                      dispatched=dispatched)


def check_constraints(profile: Profile) -> Iterator[Finding]:
    for line in profile.constraints:
        req = Requirement(line)
        installed = _version(req.name)
        if installed is not None and not req.specifier.contains(installed, prereleases=True):
            yield Finding(ok=False, check=req.name, detail=f"{installed} installed; the profile requires {line}")


CHECKS: tuple[Callable[[Profile], Iterator[Finding]], ...] = (
    check_families, check_torch, check_torchvision, check_onnxruntime, check_imports, check_faiss_build,
    check_constraints,
)


def diagnose(profile: Profile, uses: tuple[str, ...] = ALL_USES, *, torch_free: bool = False,
             onnx_clip: bool = False) -> list[Finding]:
    """Every check's findings. A check that cannot run (an installed package that fails to import,
    the very thing doctor exists to find) is a finding naming the check, not a traceback.
    ``uses`` ([tool.mlfreeze] uses) drops the checks of parts the app does not use. ``torch_free``
    (a slim-only build, locks/<profile>-slim.txt): no torch or torchvision checks; CLIP needs
    onnxruntime and the tokenizer's libraries instead of open_clip. ``onnx_clip``: a slim flavor is
    built beside full or lite, so CLIP needs onnxruntime too."""
    findings: list[Finding] = []
    for check in CHECKS:
        name = check.__name__
        if name == "check_onnxruntime" and "faces" not in uses and not ((torch_free or onnx_clip) and "clip" in uses):
            continue
        if name in ("check_torch", "check_torchvision") and ("clip" not in uses or torch_free):
            continue
        if name == "check_faiss_build" and "faiss" not in uses:
            continue
        try:
            findings.extend(check_imports(profile, uses, torch_free=torch_free) if name == "check_imports"
                            else check(profile))
        except Exception as exc:  # noqa: BLE001 - any import-time failure of a broken environment
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            findings.append(Finding(ok=False, check=check.__name__.removeprefix("check_"),
                                    detail=f"could not run: {type(exc).__name__}: {first}"))
    return findings


def python_finding(config: ProjectConfig, profile: Profile, running: str | None = None) -> Finding:
    """Whether this interpreter is the project's build Python (mlfreeze.project.pythons): the lock was
    resolved for it and PyInstaller freezes the interpreter it runs on. Another release the project
    accepts is a note; one its requires-python or [tool.mlfreeze] python excludes is a mismatch."""
    from mlfreeze.project.pythons import accepts, build_python

    want = build_python(config, profile).version
    running = running or f"{sys.version_info.major}.{sys.version_info.minor}"
    if running == want:
        return Finding(ok=True, check="python", detail=f"{running} (the project's build Python)")
    if accepts(config, running):
        return Finding(ok=True, note=True, check="python",
                       detail=f"this is Python {running}; the project's lock was resolved for {want}")
    return Finding(ok=False, check="python", detail=f"this is Python {running}, which the project excludes; it builds "
                                                     f"on {want} (`nox -s {profile.session}` makes that venv)")


def check_environment(profile: Profile, uses: Sequence[str], flavors: Sequence[str] = (),
                      config: ProjectConfig | None = None) -> None:
    """Print one line per check of the installed environment against ``profile``; raise
    EnvironmentMismatch (exit 2) naming the mismatches. ``flavors`` = ("slim",): torch-free, no torch checks;
    slim beside others: onnxruntime checked for CLIP too.
    ``config``: the project, whose build Python is checked against this interpreter (:func:`python_finding`)."""
    torch_free = set(flavors) == {"slim"}  # the slim-only environment installs no torch (mlfreeze.project.lock)
    findings = ([python_finding(config, profile)] if config else []) + list(diagnose(
        profile, tuple(uses), torch_free=torch_free, onnx_clip="slim" in flavors))
    for f in findings:
        mark = "ok  " if f.ok and not f.note else ("note" if f.ok else "FAIL")
        print(f"{mark} {f.check:<22} {f.detail}")
    bad = [f for f in findings if not f.ok]
    if bad:
        raise EnvironmentMismatch(
            f"{len(bad)} mismatch(es) with profile {profile.name} ({', '.join(f.check for f in bad)}); "
            f"`nox -s {profile.session}` builds a matching environment, "
            f"`mlfreeze plan --platform {profile.name}` lists its install commands")
    print(f"environment matches {profile.name}")


def main(args: argparse.Namespace) -> int:
    """``mlfreeze doctor --platform P [--flavors F]``: the project's ``uses`` (all parts outside a project)."""
    from mlfreeze.project.config import find_root_or_none, load_config

    profile = load_profile(args.platform)
    require_host(profile, "doctor")
    root = find_root_or_none()
    config = load_config(root) if root is not None else None
    uses = config.uses if config is not None else ALL_USES
    flavors = tuple(f.strip() for f in (args.flavors or "").split(",") if f.strip())
    flavors = flavors or (config.flavors if config is not None else ())  # the project's, as `build` makes them
    check_environment(profile, uses, flavors, config)
    return 0
