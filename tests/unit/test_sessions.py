"""The nox session factory's pure helpers: exit codes, the session's own arguments."""

from __future__ import annotations

from mlfreeze import sessions


class _Failed(Exception):
    def __init__(self, code):
        self.return_code = code


def test_exit_code_keeps_mlfreezes_code():
    assert [sessions.exit_code(_Failed(c)) for c in (1, 2, 3, 4, 5)] == [1, 2, 3, 4, 5]
    assert sessions.exit_code(RuntimeError("x")) == 1 and sessions.exit_code(_Failed(None)) == 1


def test_options_from_posargs():
    args = ["--set", "demo", "--flavors=full,slim", "--manifest", "m.toml"]
    assert sessions.option(args, "--set") == "demo" and sessions.option(args, "--manifest") == "m.toml"
    assert sessions.option(args, "--cache") is None and sessions.option(["--set"], "--set") is None
    assert sessions.option(args, "--flavors") == "full,slim"
