"""``mlfreeze lock``: hash-pinned lock files of a profile's build environment.

    mlfreeze lock --platform P [--variant slim] [--check]

A lock is ``locks/<profile>.txt`` (or ``locks/<profile>-<variant>.txt``) in pip's requirements
format, every line ``name==version`` with ``--hash=sha256:...`` (why not pylock.toml:
docs/architecture.md "Locked build environments"). It holds the complete closure of what a build
session installs before mlfreeze and the project: the profile's torch, torchvision and its ONE
onnxruntime distribution, the stack parts the project ``uses`` (src/mlfreeze/platforms/stack.toml),
PyInstaller, mlfreeze's own requirements and the project's ``[project] dependencies``. Build
sessions install it with ``pip install --require-hashes --no-deps -r``.

The resolver is uv (``uv pip compile --generate-hashes``) for the project's build Python
(mlfreeze.project.pythons: the profile's default unless the project's ``requires-python`` or
``[tool.mlfreeze] python`` picks another) and the profile's platform, with the indexes pip is
configured with (``pip config list``: index-url, extra-index-url, find-links) plus the profile's
torch index, searched as pip searches them: every index for every package, the best matching
version wins (uv's ``--index-strategy unsafe-best-match``; uv's default stops at the first index
that knows a name, which fails where pip installs). A failed resolve raises with uv's own reason
(:func:`resolver_reason`), its whole output printed above.
The onnxruntime trap stays closed by overrides: insightface's metadata asks for ``onnxruntime``
and ``opencv-python``; the overrides drop those two, so the lock holds exactly the profile's
onnxruntime distribution and OpenCV's headless build.

Staleness: the header records ``inputs-sha256``, a digest of the lock's inputs (the requirement
list and overrides it was resolved from, the project's pyproject.toml, the profile TOML and
src/mlfreeze/platforms/stack.toml). A lock is stale when that digest no longer matches; a new upstream
release is not staleness. ``--check`` exits 2 (a config problem: the committed lock no longer
matches its inputs) when the lock is stale or missing, naming the command that regenerates it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlfreeze.errors import ConfigError, FreezeError, UsageError
from mlfreeze.platforms.profiles import Profile, Stack, load_profile, load_stack
from mlfreeze.project.config import SOURCE_ROOT, ProjectConfig, load_config
from mlfreeze.schema import read_toml

LOCK_DIR = "locks"
# The torch-free CLIP runtime (mlfreeze_runtime.tokenizer: open_clip's text cleaning) in a slim lock.
SLIM_CLIP_REQUIREMENTS = ("ftfy>=6.1", "regex>=2023.0")
VARIANTS = ("", "slim")  # "": the torch stack (full and lite flavors); slim: no torch, torchvision, open_clip
DIGEST_LINE = "# inputs-sha256: "
PYINSTALLER = "pyinstaller>=6.10"
# uv's target platform per (host_os, host_arch), so a lock is for the profile, not for this host
UV_PLATFORMS = {("linux", "x86_64"): "x86_64-manylinux_2_28", ("linux", "aarch64"): "aarch64-manylinux_2_28",
                ("macos", "arm64"): "aarch64-apple-darwin", ("macos", "x86_64"): "x86_64-apple-darwin",
                ("windows", "x86_64"): "x86_64-pc-windows-msvc"}
NEVER = "sys_platform == 'never'"  # an override with this marker removes a requirement
# pip's view of several indexes: every index is searched for every name and the best version wins
# (uv's default, first-index, stops at the first index that has the name). UV_INDEX_STRATEGY overrides.
INDEX_STRATEGY = "unsafe-best-match"
INDEX_STRATEGY_ENV = "UV_INDEX_STRATEGY"


def lock_name(profile: str, variant: str = "") -> str:
    """``<profile>.txt`` or ``<profile>-<variant>.txt`` (file names start with the profile name)."""
    if variant not in VARIANTS:
        raise UsageError(f"lock variant {variant!r}; allowed: {', '.join(v or '(none)' for v in VARIANTS)}")
    return f"{profile}-{variant}.txt" if variant else f"{profile}.txt"


def variant_for(flavors: Sequence[str]) -> str:
    """The lock a build of ``flavors`` installs: ``slim`` when only the slim flavor is built."""
    return "slim" if set(flavors) == {"slim"} else ""


def lock_path(root: Path, profile: str, variant: str = "") -> Path:
    return root / LOCK_DIR / lock_name(profile, variant)


def mlfreeze_requirements() -> tuple[str, ...]:
    """mlfreeze's own run-time requirements (no extras), from its metadata or the checkout's pyproject."""
    try:
        reqs = md.requires("mlfreeze") or []
    except md.PackageNotFoundError:
        reqs = [str(r) for r in read_toml(SOURCE_ROOT / "pyproject.toml")["project"]["dependencies"]]
    from packaging.requirements import Requirement

    # one spelling whichever source: installed metadata and pyproject.toml quote markers differently
    normal = [str(Requirement(r)) for r in reqs]
    return tuple(r for r in normal if "extra ==" not in r.replace("extra==", "extra =="))


def project_requirements(config: ProjectConfig) -> tuple[str, ...]:
    """The project's ``[project] dependencies`` (none for the mlfreeze checkout: they are mlfreeze's)."""
    project = read_toml(config.pyproject).get("project", {})
    if project.get("name") == "mlfreeze":
        return ()
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ConfigError(f"{config.pyproject}: key 'project.dependencies' must be a list of strings")
    return tuple(deps)


@dataclass(frozen=True, kw_only=True)
class LockInputs:
    """What one lock is resolved from (pure data; :func:`plan_lock` makes it)."""

    profile: str
    variant: str
    requirements: tuple[str, ...]
    overrides: tuple[str, ...]
    python: str
    python_platform: str
    torch_index: str  # "" = PyPI

    def requirements_text(self) -> str:
        return "\n".join(self.requirements) + "\n"

    def overrides_text(self) -> str:
        return "\n".join(self.overrides) + "\n"


def plan_lock(profile: Profile, stack: Stack, config: ProjectConfig, *, variant: str = "",
              env: Mapping[str, str] | None = None) -> LockInputs:
    """The requirement list and overrides of ``profile``'s lock for ``config`` (pure: reads TOML only).
    ConfigError (exit 2) when the project's requires-python leaves none of the profile's Pythons."""
    from mlfreeze.project.pythons import build_python

    lock_name(profile.name, variant)  # validates the variant
    python = build_python(config, profile).version
    parts = stack.select(config.uses)
    slim = variant == "slim"
    reqs: list[str] = []
    # slim on CUDA: no torch brings the CUDA libraries, onnxruntime-gpu's own extras name them
    extras = "[cuda,cudnn]" if slim and profile.onnxruntime.package == "onnxruntime-gpu" else ""
    if any(p.torch for p in parts) and not slim:
        reqs += [f"torch=={profile.torch.version}", f"torchvision=={profile.torch.torchvision}"]
    # slim runs CLIP on onnxruntime: its own lock, and the torch lock too when the project's flavors
    # include slim beside full or lite (one environment freezes them all)
    slim_beside = "slim" in config.flavors and any(p.torch for p in parts)
    if any(p.onnxruntime for p in parts) or slim or slim_beside:
        reqs.append(f"{profile.onnxruntime.package}{extras}=={profile.onnxruntime.version}")
    reqs += stack.base
    for part in parts:
        if slim and part.torch:
            reqs += SLIM_CLIP_REQUIREMENTS  # not open-clip-torch: it pulls in torch
            continue
        reqs += [*part.requirements, *part.no_deps]
    reqs += [PYINSTALLER, *mlfreeze_requirements(), *project_requirements(config), *profile.constraints]
    overrides = []
    ort_dists = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml")
    for dist in ort_dists:
        if dist == profile.onnxruntime.package:  # an override replaces the requirement, extras included
            overrides.append(f"{dist}{extras}=={profile.onnxruntime.version}")
        else:
            overrides.append(f"{dist} ; {NEVER}")
    overrides.append(f"opencv-python ; {NEVER}")  # insightface's; the stack installs the headless build
    if slim:  # torch-free whatever asks for it: the app's own open-clip-torch, or another library's torch
        torch_side = ["torch", "torchvision", *(_requirement_name(r) for p in stack.parts.values() if p.torch
                                                 for r in p.requirements)]
        overrides += [f"{name} ; {NEVER}" for name in dict.fromkeys(torch_side)]
    platform_tag = UV_PLATFORMS.get((profile.host_os, profile.host_arch))
    if platform_tag is None:
        raise ConfigError(f"{profile.path}: no uv platform for {profile.host_os}-{profile.host_arch}")
    return LockInputs(profile=profile.name, variant=variant, requirements=tuple(dict.fromkeys(reqs)),
                      overrides=tuple(overrides), python=python, python_platform=platform_tag,
                      torch_index="" if slim else profile.torch_index(env))  # slim needs no torch index


def _requirement_name(requirement: str) -> str:
    """The distribution a PEP 508 requirement names (``open-clip-torch>=3.3`` -> ``open-clip-torch``)."""
    from packaging.requirements import Requirement

    return Requirement(requirement).name


def inputs_digest(inputs: LockInputs, *, pyproject: bytes, profile_toml: bytes, stack_toml: bytes) -> str:
    """sha256 over the lock's inputs; a lock whose header differs is stale."""
    h = hashlib.sha256()
    for chunk in (inputs.requirements_text().encode(), inputs.overrides_text().encode(), pyproject, profile_toml,
                  stack_toml, f"{inputs.python} {inputs.python_platform} {inputs.torch_index}".encode()):
        h.update(hashlib.sha256(chunk).digest())
    return h.hexdigest()


def resolution_tables(pyproject: Path) -> bytes:
    """The parts of pyproject.toml that can change a resolve, as canonical JSON: ``[project]``
    dependencies, optional-dependencies and requires-python, and ``[tool.mlfreeze] uses``. A new
    version number, a comment, a budget or any other key leaves a lock fresh."""
    data = read_toml(pyproject)
    project = data.get("project", {}) if isinstance(data.get("project"), dict) else {}
    tool = data.get("tool", {}) if isinstance(data.get("tool"), dict) else {}
    mlfreeze = tool.get("mlfreeze", {}) if isinstance(tool.get("mlfreeze"), dict) else {}
    relevant = {"dependencies": project.get("dependencies", []),
                "optional-dependencies": project.get("optional-dependencies", {}),
                "requires-python": project.get("requires-python", ""),
                "uses": mlfreeze.get("uses")}
    return json.dumps(relevant, sort_keys=True).encode()


# profile tables that cannot change a resolve: the shared-library closure and glibc floor the audit
# checks, where CI builds (runner, container; the resolve is for manylinux_2_28 whatever the
# container, UV_PLATFORMS), what the build session is called, and `pythons` (the Python a lock is
# for is hashed on its own, LockInputs.python)
PROFILE_NON_RESOLUTION = ("closure", "description", "session", "runner", "archive_format", "glibc_floor",
                          "container", "pythons")


def profile_resolution_tables(profile_toml: Path) -> bytes:
    """The profile TOML without the tables that cannot change a resolve, as canonical JSON (a new
    ``[closure] dlopen`` entry leaves a lock fresh; a new torch or onnxruntime version does not)."""
    data = {k: v for k, v in read_toml(profile_toml).items() if k not in PROFILE_NON_RESOLUTION}
    return json.dumps(data, sort_keys=True).encode()


def digest_for(inputs: LockInputs, config: ProjectConfig, profile: Profile, stack_path: Path) -> str:
    return inputs_digest(inputs, pyproject=resolution_tables(config.pyproject),
                         profile_toml=profile_resolution_tables(profile.path),
                         stack_toml=json.dumps(read_toml(stack_path), sort_keys=True).encode())  # comments: fresh


def recorded_digest(lock: Path) -> str | None:
    """The ``inputs-sha256`` of a lock's header, None when the file has none."""
    try:
        for line in lock.read_text(encoding="utf-8").splitlines():
            if line.startswith(DIGEST_LINE):
                return line[len(DIGEST_LINE):].strip()
            if line and not line.startswith("#"):
                break
    except FileNotFoundError:
        return None
    return None


def pip_index_options(pip_config: str) -> tuple[str, ...]:
    """uv options for the indexes in ``pip config list`` output (index-url, extra-index-url, find-links).

    ``global.index-url='https://mirror/simple'`` -> ``--index-url https://mirror/simple``; values may
    hold several space-separated URLs. Later scopes (``:env:``, ``install.``) win for index-url."""
    found: dict[str, list[str]] = {"index-url": [], "extra-index-url": [], "find-links": []}
    for line in pip_config.splitlines():
        m = re.match(r"^\S*?\.?(index-url|extra-index-url|find-links)='(.*)'$", line.strip())
        if not m:
            continue
        key, value = m.group(1), m.group(2)
        urls = value.split()
        if key == "index-url":
            found[key] = urls[-1:]
        else:
            found[key] += [u for u in urls if u not in found[key]]
    opts: list[str] = []
    for key in ("index-url", "extra-index-url", "find-links"):
        for url in found[key]:
            opts += [f"--{key}", url]
    return tuple(opts)


def compile_command(inputs: LockInputs, *, requirements: Path, overrides: Path, output: Path,
                    index_options: Sequence[str] = (), uv: str = "uv",
                    index_strategy: str = INDEX_STRATEGY) -> tuple[str, ...]:
    """The ``uv pip compile`` command line (pure). ``index_options``: :func:`pip_index_options`.
    ``--no-python-downloads``: resolving for another Python needs no interpreter of it (uv would
    otherwise try to download one, from outside the package indexes)."""
    cmd = [uv, "pip", "compile", str(requirements), "--override", str(overrides), "--generate-hashes",
           "--python-version", inputs.python, "--python-platform", inputs.python_platform,
           "--index-strategy", index_strategy, "--no-python-downloads", "--no-header", "--quiet",
           "--output-file", str(output),
           *index_options]
    if inputs.torch_index:
        # the profile's torch index beside pip's: torch and torchvision's local builds (2.14.1+cpu) sort
        # above PyPI's 2.14.1, so the best match takes them, as `pip install --extra-index-url` does
        cmd += ["--extra-index-url", inputs.torch_index]
    return tuple(cmd)


_BOX = re.compile(r"^[\s│├╰─▶×]+")


def resolver_reason(output: str) -> str:
    """uv's own reason for a failed resolve, as one line: the ``Because ...`` derivation (which
    package, which constraint) when uv gives one, else its ``error:`` line and the chain of causes
    under it, else its last line. ``output``: uv's stderr (and stdout), plain or drawn with boxes."""
    lines = [_BOX.sub("", line).strip() for line in output.splitlines()]
    start = next((i for i, line in enumerate(lines) if re.match(r"^(cause:\s*)?Because ", line)), None)
    if start is None:
        start = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    if start is None:
        rest = [line for line in lines if line]
        return rest[-1] if rest else "uv printed no reason"
    picked: list[str] = []
    for line in lines[start:]:
        if not line or line.startswith("hint:"):
            break
        cause = re.match(r"^(cause|Caused by):\s*", line)
        if cause and picked:
            picked[-1] = picked[-1].rstrip(".:") + ":"
        picked.append(line[cause.end():] if cause else line)
    return re.sub(r"\s+", " ", " ".join(picked)).removeprefix("error: ").strip()


def header(inputs: LockInputs, digest: str) -> str:
    variant = f" --variant {inputs.variant}" if inputs.variant else ""
    name = lock_name(inputs.profile, inputs.variant)
    return (f"# mlfreeze lock of profile {inputs.profile}{' (' + inputs.variant + ')' if inputs.variant else ''}: "
            "the complete build environment before mlfreeze and the project.\n"
            f"# Install: pip install --require-hashes --no-deps -r {LOCK_DIR}/{name}\n"
            f"# Regenerate: mlfreeze lock --platform {inputs.profile}{variant}  (resolver: uv pip compile)\n"
            f"{DIGEST_LINE}{digest}\n")


def _uv() -> str:
    """uv's executable: the `uv` package mlfreeze depends on, else one on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
    if not found:
        raise UsageError("uv is not installed: `pip install uv` (it resolves the lock)")
    return found


def pip_config() -> str:
    """``pip config list`` of this interpreter's pip: the indexes pip installs from (config files and
    ``PIP_INDEX_URL`` / ``PIP_EXTRA_INDEX_URL`` / ``PIP_FIND_LINKS``), for :func:`pip_index_options`."""
    from mlfreeze import _proc as proc

    return proc.capture([sys.executable, "-m", "pip", "config", "list"]).stdout


def resolve(inputs: LockInputs, *, pip_config: str, what: str, previous: str | None = None) -> str:
    """``uv pip compile`` of ``inputs`` with pip's indexes (``pip config list`` output), as pip would
    find them (:data:`INDEX_STRATEGY`); returns the lock body. ``previous``: the lock being replaced,
    whose pins uv prefers (it reads an existing output file as preferences, as pip-compile does), so
    a relock moves only what its changed inputs force. uv's output is printed; FreezeError
    (exit 4) with uv's own reason in one line (:func:`resolver_reason`) when the resolve fails."""
    from mlfreeze import _proc as proc

    with tempfile.TemporaryDirectory(prefix="mlfreeze-lock-") as tmp:
        req, ovr, res = Path(tmp) / "requirements.in", Path(tmp) / "overrides.txt", Path(tmp) / "lock.txt"
        req.write_text(inputs.requirements_text(), encoding="utf-8")
        ovr.write_text(inputs.overrides_text(), encoding="utf-8")
        if previous is not None:
            res.write_text(previous, encoding="utf-8")
        cmd = compile_command(inputs, requirements=req, overrides=ovr, output=res,
                              index_options=pip_index_options(pip_config), uv=_uv(),
                              index_strategy=os.environ.get(INDEX_STRATEGY_ENV) or INDEX_STRATEGY)
        done = proc.capture(cmd, echo=True)
        sys.stderr.write(done.stdout + done.stderr)  # the resolver's own output, above the one-line reason
        if done.returncode != 0 or not res.is_file():
            raise FreezeError(f"uv could not resolve {what} for Python {inputs.python}: "
                              f"{resolver_reason(done.stderr + done.stdout)}")
        # uv names its inputs by path in "# via" comments: the temporary folder must not reach the lock
        return res.read_text(encoding="utf-8").replace(str(req), "requirements.in").replace(str(ovr), "overrides.txt")


def write_lock(config: ProjectConfig, profile: Profile, *, variant: str = "", stack_path: Path | None = None,
               upgrade: bool = False) -> Path:
    """Resolve (:func:`resolve`) and write the lock atomically, keeping the pins of the lock it replaces
    where the inputs allow (``upgrade``: resolve afresh, the newest versions the inputs allow);
    FreezeError (exit 4) when the resolve fails, ConfigError (exit 2) before resolving when the
    project's requires-python leaves no Python of the profile."""
    from mlfreeze.platforms.profiles import PROFILE_DIR

    stack_path = stack_path or PROFILE_DIR / "stack.toml"
    inputs = plan_lock(profile, load_stack(stack_path), config, variant=variant)
    digest = digest_for(inputs, config, profile, stack_path)
    out = lock_path(config.root, profile.name, variant)
    previous = out.read_text(encoding="utf-8") if out.is_file() and not upgrade else None
    body = resolve(inputs, pip_config=pip_config(), what=f"the {profile.name} lock", previous=previous)
    check_single_onnxruntime(body, profile)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(header(inputs, digest) + body, encoding="utf-8")
    tmp_out.replace(out)
    return out


def pinned(lock_text: str) -> dict[str, str]:
    """name -> version of every ``name==version`` line of a lock (names normalised)."""
    out = {}
    for line in lock_text.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def check_single_onnxruntime(lock_text: str, profile: Profile) -> None:
    """The lock holds no onnxruntime distribution but the profile's (and no opencv-python)."""
    names = pinned(lock_text)
    extra = [n for n in names if (n.startswith("onnxruntime") and n != "onnxruntime-extensions"
                                  and n != profile.onnxruntime.package) or n == "opencv-python"]
    if extra:
        raise FreezeError(f"the {profile.name} lock resolved {', '.join(extra)} beside "
                         f"{profile.onnxruntime.package}: the overrides did not hold")


def staleness(config: ProjectConfig, profile: Profile, variant: str = "", stack_path: Path | None = None) -> str | None:
    """None when the lock is fresh, else one line saying why it is missing or stale (pure: files only)."""
    from mlfreeze.platforms.profiles import PROFILE_DIR

    stack_path = stack_path or PROFILE_DIR / "stack.toml"
    path = lock_path(config.root, profile.name, variant)
    want = digest_for(plan_lock(profile, load_stack(stack_path), config, variant=variant), config, profile,
                      stack_path)
    got = recorded_digest(path)
    if not path.is_file():
        return f"{path} is missing"
    if got != want:
        return (f"{path} is stale: its inputs changed (recorded inputs-sha256 {str(got)[:12]}, "
                f"now {want[:12]})")
    return None


def main(args: argparse.Namespace) -> int:
    """``mlfreeze lock --platform P [--variant slim] [--check | --upgrade]``."""
    profile = load_profile(args.platform)
    config = load_config()
    variant = args.variant or ""
    if args.check:
        problem = staleness(config, profile, variant)
        if problem:
            raise ConfigError(f"{problem}; run `mlfreeze lock --platform {profile.name}"
                              f"{' --variant ' + variant if variant else ''}` and commit it")
        print(f"{lock_path(config.root, profile.name, variant)} is up to date")
        return 0
    out = write_lock(config, profile, variant=variant, upgrade=args.upgrade)
    n = len(pinned(out.read_text(encoding="utf-8")))
    print(f"wrote {out} ({n} pinned distributions, sha256 hashes)")
    return 0

