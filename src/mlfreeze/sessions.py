"""The nox session factory: one ``build-<platform>`` session per platform profile.

A project's noxfile.py (written by ``mlfreeze init``) stays a few lines::

    import nox
    from mlfreeze.sessions import make_sessions

    make_sessions(globals(), mlfreeze="mlfreeze==0.1.0")

Each build session runs on the project's build Python (mlfreeze.project.pythons: the profile's
default unless ``requires-python`` or ``[tool.mlfreeze] python`` picks another), refuses a profile
of another host (exit 2, before creating anything), a ``requires-python`` the profile cannot
meet (exit 2, before creating a venv), a missing or stale lock (exit 2), installs the lock with
``pip install --require-hashes --no-deps -r locks/<profile>.txt``, then mlfreeze and the project
with ``--no-deps``, and runs ``mlfreeze build --platform <profile>`` with the session's
arguments. Its exit status is mlfreeze's (0-5, docs "Exit codes"): nox itself would turn every
failure into 1.

The session's venv is reused (``reuse_venv=True``): what was installed is recorded in
``<venv>/mlfreeze-installed.json`` (each install command with the sha256 of the lock or wheel it
names, and of pyproject.toml for the project) after every install succeeded, and a later run
skips each install whose record matches. A changed lock first uninstalls what the old lock held
and the new one does not, so a reused venv holds exactly the lock. The project's own modules
are frozen from its tree, not from the installed copy, so the project is reinstalled only when
its pyproject.toml changes (the mlfreeze checkout, whose installed copy is the builder itself:
always).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from mlfreeze.errors import MlfreezeError, UsageError
from mlfreeze.platforms.profiles import Profile, all_profiles

EXIT_CODES = range(0, 6)  # mlfreeze's documented exit codes
INSTALLED = "mlfreeze-installed.json"  # in the session's venv: what its installs were (install_state)


def exit_code(exc: BaseException) -> int:
    """The exit status a failed nox command carried (nox's CommandFailed.return_code), else 1."""
    code = getattr(exc, "return_code", None)
    return code if isinstance(code, int) and code > 0 else 1


def build_args(profile: Profile, posargs: Sequence[str]) -> list[str]:
    return ["mlfreeze", "build", "--platform", profile.name, *posargs]


def option(posargs: Sequence[str], name: str) -> str | None:
    """The value of ``name`` (``--set S`` or ``--set=S``) among the session's arguments, else None."""
    args = list(posargs)
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def run_build(session: Any, profile: Profile, *, root: Path, mlfreeze_source: str | None) -> None:
    """The body of ``build-<platform>``; exits the process with mlfreeze's code when it fails."""
    from mlfreeze.models.manifest import check_model_set
    from mlfreeze.options import parse_flavors as build_flavors
    from mlfreeze.plan import install_steps, is_mlfreeze_project
    from mlfreeze.project.config import load_config
    from mlfreeze.project.lock import staleness, variant_for
    from mlfreeze_runtime.buildinfo import FLAVORS

    try:  # everything that can be refused without installing anything, in well under a second
        config = load_config(root)
        check_model_set(config, option(session.posargs, "--manifest"),
                        option(session.posargs, "--set") or config.model_set)
        # build's own parser: a bad name is refused before a lock is chosen or anything installed
        given = option(session.posargs, "--flavors")
        if given is None and "--flavors" in session.posargs:
            raise UsageError(f"--flavors needs a value: a comma-separated list of {', '.join(FLAVORS)}")
        flavors = build_flavors(given, config)
        variant = variant_for(flavors)
        problem = staleness(config, profile, variant)
    except MlfreezeError as exc:
        print(f"nox -s {profile.session}: error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    if problem:
        print(f"nox -s {profile.session}: error: {problem}; run `mlfreeze lock --platform {profile.name}"
              f"{' --variant ' + variant if variant else ''}` (and commit the lock)", file=sys.stderr)
        sys.exit(2)
    steps = install_steps(profile, config, flavors=flavors, mlfreeze_source=mlfreeze_source)
    install(session, [s.command for s in steps], root=root, always_project=is_mlfreeze_project(config))
    import nox.command

    try:
        session.run(*build_args(profile, session.posargs))
    except nox.command.CommandFailed as exc:
        code = exit_code(exc)
        print(f"nox -s {profile.session}: mlfreeze build exited {code}", file=sys.stderr)
        sys.exit(code)  # SystemExit passes through nox: the process exits with mlfreeze's code


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install_state(commands: Sequence[Sequence[str]], *, root: Path, always_project: bool = False,
                  ) -> list[dict[str, Any]]:
    """What each ``pip install`` command installs, as JSON data: the command and the sha256 of every
    file it names (the lock, a wheel) relative to ``root``; for the project (``.``) the sha256 of its
    pyproject.toml, or ``None`` with ``always_project`` (never skipped)."""
    out: list[dict[str, Any]] = []
    for command in commands:
        files: dict[str, str | None] = {}
        for arg in command[2:]:
            if arg == ".":
                files["."] = None if always_project else _sha256(root / "pyproject.toml")
            elif not arg.startswith("-") and (root / arg).is_file():
                files[arg] = _sha256(root / arg)
        out.append({"command": list(command), "sha256": files})
    return out


def lock_names(commands: Sequence[Sequence[str]], root: Path) -> dict[str, str]:
    """name -> version pinned by the lock the ``-r`` of ``commands`` names (empty without one)."""
    from mlfreeze.project.lock import pinned

    for command in commands:
        if "-r" in command:
            lock = root / command[command.index("-r") + 1]
            return pinned(lock.read_text(encoding="utf-8")) if lock.is_file() else {}
    return {}


def read_installed(venv: Path | None) -> Mapping[str, Any]:
    """The venv's record of its installs (:data:`INSTALLED`), ``{}`` when absent or unreadable."""
    try:
        data = json.loads((venv / INSTALLED).read_text(encoding="utf-8")) if venv else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def install(session: Any, commands: Sequence[Sequence[str]], *, root: Path, always_project: bool = False) -> None:
    """Run the ``pip install`` commands in the session's venv, skipping those its record says were
    already installed from the same files; the record is rewritten after all of them succeeded."""
    try:
        venv_location = getattr(session.virtualenv, "location", None)  # none for a session without a venv
    except ValueError:  # nox: "A virtualenv has not been created for this session"
        venv_location = None
    venv = Path(venv_location) if venv_location else None
    before = read_installed(venv)
    done = {json.dumps(s, sort_keys=True) for s in before.get("steps", []) if None not in s["sha256"].values()}
    state = install_state(commands, root=root, always_project=always_project)
    names = lock_names(commands, root)
    old = before.get("lock", {}) if isinstance(before.get("lock"), dict) else {}
    gone = sorted(set(old) - set(names))
    record = venv / INSTALLED if venv is not None else None
    if record is not None and any(json.dumps(s, sort_keys=True) not in done for s in state):
        # until every install succeeded nothing counts as installed; the old lock's names are kept
        # so that a run after a failed one still uninstalls what the new lock dropped
        record.write_text(json.dumps({"steps": [], "lock": {**old, **names}}) + "\n", encoding="utf-8")
    for command, step in zip(commands, state, strict=True):
        assert command[:2] == ("pip", "install"), command
        if json.dumps(step, sort_keys=True) in done:
            print(f"nox: {' '.join(command)}: already installed in this venv ({INSTALLED}), skipped",
                  file=sys.stderr, flush=True)
            continue
        if "-r" in command and gone:  # the reused venv holds exactly the new lock
            session.run("python", "-m", "pip", "uninstall", "--yes", *gone)
            gone = []
        session.install(*command[2:])
    if record is not None:
        record.write_text(json.dumps({"steps": state, "lock": names}, indent=1, sort_keys=True) + "\n",
                                      encoding="utf-8")


def session_python(root: Path, profile: Profile) -> str | None:
    """The build Python of the project at ``root`` for ``profile``; None when its config cannot say
    (the session then refuses with the config's own error before creating a venv)."""
    from mlfreeze.project.config import load_config
    from mlfreeze.project.pythons import build_python

    try:
        return build_python(load_config(root), profile).version
    except MlfreezeError:
        return None


def refuse_off_host(profile: Profile, host: Any) -> None:
    print(f"nox -s {profile.session}: error: platform {profile.name} is built on "
          f"{profile.host_os}-{profile.host_arch} (runner {profile.runner}); this host is {host}. "
          f"To inspect its steps here: `mlfreeze plan --platform {profile.name}`", file=sys.stderr)
    sys.exit(2)


def make_sessions(namespace: MutableMapping[str, Any], *, mlfreeze: str | None = None,
                  profiles: Sequence[Profile] | None = None) -> list[Callable[..., None]]:
    """Register ``build-<platform>`` nox sessions for every profile; return the session functions.

    ``namespace``: the noxfile's ``globals()`` (the project root is its folder). ``mlfreeze``:
    where the sessions install mlfreeze from, a pip requirement or path (``mlfreeze==0.1.0``,
    ``build/mlfreeze-0.1.0-py3-none-any.whl``); ignored for the mlfreeze checkout itself."""
    import nox

    from mlfreeze.hostinfo import current

    root = Path(namespace.get("__file__") or Path.cwd() / "noxfile.py").resolve().parent
    host = current()
    made: list[Callable[..., None]] = []
    for profile in profiles or list(all_profiles().values()):
        on_host = (profile.host_os, profile.host_arch) == (host.os, host.arch)

        def build(session: nox.Session, profile: Profile = profile, on_host: bool = on_host) -> None:
            if not on_host:
                refuse_off_host(profile, host)
            run_build(session, profile, root=root, mlfreeze_source=mlfreeze)

        build.__doc__ = f"Build, verify and freeze {profile.name}: {profile.description}."
        build.__name__ = profile.session.replace("-", "_")
        python = session_python(root, profile) if on_host else None
        session = nox.session(name=profile.session, python=python, reuse_venv=True,
                              venv_backend=None if python else "none", default=False,
                              tags=["build", profile.host_os, profile.accelerator])(build)
        namespace[build.__name__] = session
        made.append(session)
    return made
