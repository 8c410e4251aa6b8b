"""The nox session factory: one ``build-<platform>`` session per platform profile.

A project's noxfile.py (written by ``mlfreeze init``) stays a few lines::

    import nox
    from mlfreeze.sessions import make_sessions

    make_sessions(globals(), mlfreeze="mlfreeze==0.1.0")

Each build session refuses a profile of another host (exit 2, before creating anything),
refuses a missing or stale lock (exit 2), installs the lock with
``pip install --require-hashes --no-deps -r locks/<profile>.txt``, then mlfreeze and the project
with ``--no-deps``, and runs ``mlfreeze build --platform <profile>`` with the session's
arguments. Its exit status is mlfreeze's (0-5, docs "Exit codes"): nox itself would turn every
failure into 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from mlfreeze.errors import MlfreezeError, UsageError
from mlfreeze.platforms.profiles import Profile, all_profiles

EXIT_CODES = range(0, 6)  # mlfreeze's documented exit codes


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
    from mlfreeze.plan import install_steps
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
    for step in install_steps(profile, config, flavors=flavors, mlfreeze_source=mlfreeze_source):
        assert step.command[:2] == ("pip", "install"), step
        session.install(*step.command[2:])
    import nox.command

    try:
        session.run(*build_args(profile, session.posargs))
    except nox.command.CommandFailed as exc:
        code = exit_code(exc)
        print(f"nox -s {profile.session}: mlfreeze build exited {code}", file=sys.stderr)
        sys.exit(code)  # SystemExit passes through nox: the process exits with mlfreeze's code


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
        session = nox.session(name=profile.session, python=profile.python if on_host else None,
                              venv_backend=None if on_host else "none", default=False,
                              tags=["build", profile.host_os, profile.accelerator])(build)
        namespace[build.__name__] = session
        made.append(session)
    return made
