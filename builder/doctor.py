"""``mlfreeze doctor``: does the installed environment match the profile?

Run inside the build environment. Each check yields one line; a mismatch is a line that
says what is installed, what the profile wants, and how to fix it. Any mismatch -> exit 2.
Reads distribution metadata first (cheap), then imports the ML stack to prove it works.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mlfreeze.errors import EnvironmentMismatch
from mlfreeze.hostinfo import cpu_has_avx2, require_host
from mlfreeze.platforms.profiles import Profile, load_profile
from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version


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


def check_onnxruntime(profile: Profile) -> Iterator[Finding]:
    wanted = profile.onnxruntime
    present = {}
    for dist in md.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith("onnxruntime") and name != "onnxruntime-extensions":
            present[name] = dist.version
    if len(present) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in sorted(present.items()))
        yield Finding(ok=False, check="onnxruntime",
                      detail=f"{len(present)} distributions of the onnxruntime module are installed ({listed}); they "
                             f"overwrite each other's files: keep only {wanted.package} "
                             f"(pip uninstall -y {' '.join(sorted(set(present) - {wanted.package}))})")
        return
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
    if profile.accelerator == "cuda":
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


def check_imports(profile: Profile, uses: tuple[str, ...] = ALL_USES) -> Iterator[Finding]:
    for module, dist in (pair for part in uses for pair in PART_IMPORTS.get(part, ())):
        try:
            importlib.import_module(module)
        except Exception as exc:
            yield Finding(ok=False, check=module, detail=f"cannot import: {exc}".splitlines()[0])
        else:
            yield Finding(ok=True, check=module, detail=f"{dist} {_version(dist) or '?'}")


def check_faiss_avx2(profile: Profile) -> Iterator[Finding]:
    if "faiss" not in sys.modules:
        return
    avx2 = cpu_has_avx2()
    if avx2 is None:
        yield Finding(ok=True, note=True, check="faiss avx2", detail="cannot tell whether this CPU has AVX2")
        return
    if not avx2:
        return
    import faiss

    options = faiss.get_compile_options() if hasattr(faiss, "get_compile_options") else ""
    if "AVX2" in options or "faiss.swigfaiss_avx2" in sys.modules:
        yield Finding(ok=True, check="faiss avx2", detail=f"AVX2 code in use ({options.strip()})")
    else:
        yield Finding(ok=False, check="faiss avx2",
                      detail="this CPU has AVX2 but faiss loaded its generic build "
                             f"({options.strip() or 'no options'})")


def check_constraints(profile: Profile) -> Iterator[Finding]:
    for line in profile.constraints:
        req = Requirement(line)
        installed = _version(req.name)
        if installed is not None and not req.specifier.contains(installed, prereleases=True):
            yield Finding(ok=False, check=req.name, detail=f"{installed} installed; the profile requires {line}")


CHECKS: tuple[Callable[[Profile], Iterator[Finding]], ...] = (
    check_torch, check_torchvision, check_onnxruntime, check_imports, check_faiss_avx2, check_constraints,
)


def diagnose(profile: Profile, uses: tuple[str, ...] = ALL_USES) -> list[Finding]:
    """Every check's findings. A check that cannot run (an installed package that fails to import,
    the very thing doctor exists to find) is a finding naming the check, not a traceback.
    ``uses`` ([tool.mlfreeze] uses) drops the checks of parts the app does not use."""
    findings: list[Finding] = []
    for check in CHECKS:
        if check is check_onnxruntime and "faces" not in uses:
            continue
        if check in (check_torch, check_torchvision) and "clip" not in uses:
            continue
        if check is check_faiss_avx2 and "faiss" not in uses:
            continue
        try:
            findings.extend(check_imports(profile, uses) if check is check_imports else check(profile))
        except Exception as exc:  # noqa: BLE001 - any import-time failure of a broken environment
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            findings.append(Finding(ok=False, check=check.__name__.removeprefix("check_"),
                                    detail=f"could not run: {type(exc).__name__}: {first}"))
    return findings


def main(args: argparse.Namespace) -> int:
    profile = load_profile(args.platform)
    require_host(profile, "doctor")
    uses = getattr(args, "uses", None)
    if uses is None:
        from mlfreeze.config import find_root_or_none, load_config

        root = find_root_or_none()
        uses = load_config(root).uses if root is not None else ALL_USES
    findings = diagnose(profile, tuple(uses))
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
    return 0
