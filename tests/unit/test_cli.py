"""The CLI contract: sub-commands, one-line errors with documented exit codes, lazy imports."""

from __future__ import annotations

import argparse
import sys

import pytest

from mlfreeze import cli
from mlfreeze.errors import (
    BudgetExceeded,
    ConfigError,
    DownloadError,
    FreezeError,
    MlfreezeError,
    VerificationError,
    WrongHostError,
)


def test_every_design_command_is_wired():
    assert set(cli.COMMANDS) == {"init", "lock", "plan", "doctor", "fetch", "export", "verify", "freeze", "sizes",
                                 "build", "release", "audit", "publish", "image"}
    parser = cli.build_parser()
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as info:
            parser.parse_args([name, "--help"])
        assert info.value.code == 0


def test_help_names_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for code in ("0 ok", "1 verification failed", "3 download", "5 size budget exceeded"):
        assert code in out


@pytest.mark.parametrize(
    ("error", "code"),
    [(VerificationError, 1), (ConfigError, 2), (WrongHostError, 2), (DownloadError, 3), (FreezeError, 4),
     (BudgetExceeded, 5)],
)
def test_errors_become_one_line_and_exit_code(monkeypatch, capsys, error: type[MlfreezeError], code: int):
    def fail(args: argparse.Namespace) -> int:
        raise error("it broke; do this next")

    monkeypatch.setattr(cli, "_resolve", lambda spec: fail)
    assert cli.main(["plan", "--platform", "linux-cpu"]) == code
    err = capsys.readouterr().err
    assert err == "mlfreeze plan: error: it broke; do this next\n"


def test_usage_error_is_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["freeze", "--platform", "linux-cpu", "--flavor", "medium"])
    assert info.value.code == 2


def test_build_plan_flag_works_for_foreign_platform(capsys):
    assert cli.main(["build", "--platform", "win-cuda", "--plan", "--flavors", "lite"]) == 0
    out = capsys.readouterr().out
    assert "download.pytorch.org/whl/cu126" in out and "photo-search.exe" in out


def test_build_bad_flavors(capsys):
    assert cli.main(["build", "--platform", "linux-cuda", "--flavors", "full,huge", "--plan"]) == 2
    assert "allowed flavors are full, lite" in capsys.readouterr().err


def test_wrong_host_build_is_refused_before_any_work(capsys, monkeypatch):
    from mlfreeze import hostinfo

    monkeypatch.setattr(hostinfo, "current", lambda: hostinfo.Host(os="linux", arch="x86_64"))
    before = set(sys.modules)
    assert cli.main(["build", "--platform", "mac-arm64"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mlfreeze plan --platform mac-arm64" in err
    assert not [m for m in set(sys.modules) - before if m.split(".")[0] in ("torch", "PyInstaller")]
