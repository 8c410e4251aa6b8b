"""The GitHub matrix is derived from src/mlfreeze/platforms/*.toml (src/mlfreeze/release/matrix.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mlfreeze.errors import ConfigError, UsageError
from mlfreeze.platforms.profiles import PROFILE_DIR, all_profiles, load_profile_file
from mlfreeze.release import matrix


def _copy_profiles(tmp_path: Path) -> Path:
    target = tmp_path / "platforms"
    shutil.copytree(PROFILE_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def _printed(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert matrix.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_every_profile_is_one_matrix_entry(capsys: pytest.CaptureFixture[str]) -> None:
    printed = _printed(capsys)
    profiles = all_profiles()
    assert [e["platform"] for e in printed["include"]] == sorted(profiles) and len(profiles) == 7
    for e in printed["include"]:
        p = profiles[e["platform"]]
        assert (e["session"], e["runner"], e["archive_format"], e["python"]) == (
            p.session, p.runner, p.archive_format, p.python)


def test_runners_match_the_hosts_the_issue_names() -> None:
    runners = {e["platform"]: e["runner"] for e in matrix.build_matrix(all_profiles())["include"]}
    assert runners["mac-arm64"].startswith("macos-") and "intel" not in runners["mac-arm64"]
    assert runners["mac-x64"] in ("macos-13",) or runners["mac-x64"].endswith("-intel")
    assert all(runners[p].startswith("ubuntu-") for p in runners if p.startswith("linux-"))
    assert all(runners[p].startswith("windows-") for p in runners if p.startswith("win-"))


def test_removing_or_adding_a_profile_changes_the_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    platforms = _copy_profiles(tmp_path)
    (platforms / "win-cuda.toml").unlink()
    text = (platforms / "linux-cpu.toml").read_text()
    (platforms / "linux-arm.toml").write_text(
        text.replace('"linux-cpu"', '"linux-arm"').replace('"build-linux"', '"build-linux-arm"')
        .replace('host_arch = "x86_64"', 'host_arch = "arm64"').replace('"ubuntu-24.04"', '"ubuntu-24.04-arm"')
        .replace("manylinux_2_28_x86_64", "manylinux_2_28_aarch64"))
    names = [e["platform"] for e in _printed(capsys, "--platforms-dir", str(platforms))["include"]]
    assert "win-cuda" not in names and "linux-arm" in names and len(names) == 7


def test_one_platform_for_workflow_dispatch(capsys: pytest.CaptureFixture[str]) -> None:
    assert [e["platform"] for e in _printed(capsys, "--platform", "win-cpu")["include"]] == ["win-cpu"]
    assert len(_printed(capsys, "--platform", "all")["include"]) == 7
    assert matrix.main(["--platform", "win-arm"]) == 2
    assert "unknown platform 'win-arm'" in capsys.readouterr().err
    with pytest.raises(UsageError):
        matrix.build_matrix(all_profiles(), "nope")


def test_a_runner_that_cannot_build_the_profile_is_refused(tmp_path: Path) -> None:
    platforms = _copy_profiles(tmp_path)
    path = platforms / "mac-x64.toml"
    path.write_text(path.read_text().replace('runner = "macos-15-intel"', 'runner = "macos-15"'))
    with pytest.raises(ConfigError, match="mac-x64.toml.*'runner' 'macos-15'.*macos/x86_64"):
        matrix.entry(load_profile_file(path))


def test_github_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "github_output"
    out.write_text("earlier=1\n")
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    assert matrix.main(["--github-output", "--platform", "linux-cpu"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "earlier=1" and lines[1].startswith("matrix={")
    assert json.loads(lines[1].removeprefix("matrix="))["include"][0]["platform"] == "linux-cpu"
    monkeypatch.delenv("GITHUB_OUTPUT")
    assert matrix.main(["--github-output"]) == 2


def test_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert matrix.main(["--names"]) == 0
    assert capsys.readouterr().out.split() == sorted(all_profiles())


def _project(root: Path, serve: bool) -> Path:
    root.mkdir()
    (root / "app.py").write_text("print('hi')\n")
    table = '\n[tool.mlfreeze.serve]\nargs = ["--host", "{host}"]\nport_env = "PORT"\nready = "/readyz"\n'
    table = table if serve else ""
    (root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.0"\n\n[tool.mlfreeze]\napp = "x"\n'
                                         f'entry = "app.py"\n{table}')
    return root


@pytest.mark.parametrize(("platform", "want"), [("all", ["linux-cpu", "linux-cu118", "linux-cuda"]),
                                                ("linux-cuda", ["linux-cuda"]), ("win-cpu", [])])
def test_the_image_matrix_is_the_linux_profiles_of_a_server_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    platform: str, want: list[str]) -> None:
    linux = sorted(n for n, p in all_profiles().items() if p.host_os == "linux")
    for serves in (True, False):
        out = tmp_path / f"github_output-{serves}"
        monkeypatch.setenv("GITHUB_OUTPUT", str(out))
        project = _project(tmp_path / f"project-{serves}", serves)
        assert matrix.main(["--github-output", "--platform", platform, "--project", str(project)]) == 0
        values = dict(line.split("=", 1) for line in out.read_text().splitlines())
        expected = sorted(want) if serves else []  # a CLI app has nothing that could become ready in a container
        assert sorted(e["platform"] for e in json.loads(values["images"])["include"]) == expected
        assert set(want) <= set(linux) and len(json.loads(values["matrix"])["include"]) >= len(want)
        assert values["has_images"] == ("true" if expected else "false")


def test_the_image_matrix_follows_the_project_around_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "out"))
    monkeypatch.chdir(_project(tmp_path / "server", True))
    (tmp_path / "server" / "src").mkdir()
    monkeypatch.chdir(tmp_path / "server" / "src")
    assert matrix.main(["--github-output", "--platform", "linux-cpu"]) == 0
    assert "has_images=true" in (tmp_path / "out").read_text()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.0"\n')
    capsys.readouterr()
    assert matrix.main(["--github-output", "--project", str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no [tool.mlfreeze] table" in err[0]
