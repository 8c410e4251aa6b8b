"""The project's build Python: the profile's default unless requires-python or [tool.mlfreeze] python
says otherwise; refused (exit 2, naming both) when the profile has none the project accepts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlfreeze import cli
from mlfreeze.errors import ConfigError
from mlfreeze.platforms.profiles import all_profiles, load_profile, load_profile_file, load_stack
from mlfreeze.project.config import load_config
from mlfreeze.project.lock import plan_lock
from mlfreeze.project.pythons import admits, build_python, specifier


def _project(root: Path, requires: str | None, python: str | None = None) -> Path:
    (root / "app.py").write_text("print('hi')\n")
    req = f'requires-python = "{requires}"\n' if requires is not None else ""
    tool = f'python = "{python}"\n' if python else ""
    (root / "pyproject.toml").write_text(f'[project]\nname = "x"\nversion = "1"\n{req}\n'
                                         f'[tool.mlfreeze]\napp = "x"\nentry = "app.py"\nuses = ["clip"]\n{tool}')
    return root


@pytest.mark.parametrize(("requires", "want"), [
    (None, "3.11"), (">=3.10", "3.11"), (">=3.12", "3.12"), ("~=3.13.0", "3.13"), (">=3.12.4", "3.12"),
    ("==3.14.*", "3.14"), ("<3.12", "3.11"), ("!=3.11.*", "3.12"),
])
def test_requires_python_picks_the_nearest_supported_release(tmp_path, requires, want):
    got = build_python(load_config(_project(tmp_path, requires)), load_profile("linux-cuda"))
    assert got.version == want
    assert got.reason.startswith("the default of profile") == (want == "3.11")


def test_a_profile_whose_default_is_excluded_takes_the_release_below_when_none_above(tmp_path):
    # mac-x64 (torch 2.2.2) stops at 3.12: "<3.11" leaves it 3.10, the nearest below the default
    assert build_python(load_config(_project(tmp_path, "<3.11")), load_profile("mac-x64")).version == "3.10"


def test_requires_python_excluding_every_supported_release_names_both(tmp_path):
    cfg = load_config(_project(tmp_path, ">=3.13"))
    with pytest.raises(ConfigError) as err:
        build_python(cfg, load_profile("linux-cu118"))
    message = err.value.message
    assert err.value.exit_code == 2 and "\n" not in message
    assert "'>=3.13'" in message and "linux-cu118" in message and "3.10, 3.11, 3.12" in message
    assert build_python(cfg, load_profile("linux-cuda")).version == "3.13"  # another profile can


def test_tool_python_wins_and_must_agree(tmp_path):
    assert build_python(load_config(_project(tmp_path, ">=3.11", "3.13")), load_profile("linux-cuda")).version \
        == "3.13"
    with pytest.raises(ConfigError, match="does not support"):
        build_python(load_config(_project(tmp_path, None, "3.13")), load_profile("mac-x64"))
    with pytest.raises(ConfigError, match="requires-python '>=3.12' excludes"):
        build_python(load_config(_project(tmp_path, ">=3.12", "3.11")), load_profile("linux-cuda"))
    (tmp_path / "pyproject.toml").write_text((tmp_path / "pyproject.toml").read_text().replace('"3.11"', '"3"'))
    with pytest.raises(ConfigError, match="tool.mlfreeze.python"):
        load_config(tmp_path)


def test_a_malformed_requires_python_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a version specifier"):
        build_python(load_config(_project(tmp_path, ">= three")), load_profile("linux-cuda"))
    assert admits(specifier(">=3.12.4", "x"), "3.12") and not admits(specifier(">=3.13", "x"), "3.12")


def test_the_lock_is_resolved_for_the_projects_python(tmp_path):
    cfg = load_config(_project(tmp_path, ">=3.12"))
    assert plan_lock(load_profile("linux-cuda"), load_stack(), cfg).python == "3.12"


def test_plan_shows_the_python_and_lock_refuses_fast(tmp_path, monkeypatch, capsys):
    root = _project(tmp_path, ">=3.12")
    pyproject = root / "pyproject.toml"  # plan refuses a model set holding kinds the app does not use
    pyproject.write_text(pyproject.read_text().replace('uses = ["clip"]', 'uses = ["clip", "faces"]'))
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFREEZE_PROJECT", raising=False)
    assert cli.main(["plan", "--platform", "linux-cuda"]) == 0
    out = capsys.readouterr().out
    assert "python          3.12 (requires-python >=3.12 excludes the profile's default 3.11)" in out
    _project(tmp_path, ">=3.15")
    started = time.monotonic()
    assert cli.main(["lock", "--platform", "linux-cuda"]) == 2  # before uv or pip is started (no subprocess here)
    err = capsys.readouterr().err
    assert time.monotonic() - started < 2
    assert err.count("\n") == 1 and "'>=3.15'" in err and "linux-cuda" in err and "3.11, 3.12, 3.13, 3.14" in err


def test_every_profile_lists_its_default_among_ascending_pythons():
    for profile in all_profiles().values():
        assert profile.python in profile.pythons, profile.name
        minors = [int(v.split(".")[1]) for v in profile.pythons]
        assert minors == sorted(set(minors)), profile.name


@pytest.mark.parametrize(("line", "match"), [
    ('pythons = ["3.12", "3.11"]', "ascending"),
    ('pythons = ["3.12"]', "without the default"),
    ('pythons = ["3.x"]', "Python releases"),
])
def test_profile_pythons_are_validated(tmp_path, line, match):
    src = (Path(load_profile("linux-cuda").path)).read_text()
    start = src.index("pythons = [")
    bad = src[:start] + line + src[src.index("\n", start):]
    (tmp_path / "linux-cuda.toml").write_text(bad)
    with pytest.raises(ConfigError, match=match):
        load_profile_file(tmp_path / "linux-cuda.toml")


def test_doctor_checks_the_interpreter_against_the_projects_python(tmp_path):
    from mlfreeze.project.doctor import python_finding

    profile = load_profile("linux-cuda")
    cfg = load_config(_project(tmp_path, ">=3.12"))
    assert python_finding(cfg, profile, "3.12").ok and not python_finding(cfg, profile, "3.12").note
    other = python_finding(cfg, profile, "3.13")  # accepted, but the lock was resolved for 3.12
    assert other.ok and other.note and "3.12" in other.detail
    bad = python_finding(cfg, profile, "3.11")
    assert not bad.ok and "excludes" in bad.detail and "nox -s build-linux-cuda" in bad.detail
    pinned = load_config(_project(tmp_path, ">=3.11", "3.13"))
    assert not python_finding(pinned, profile, "3.12").ok  # [tool.mlfreeze] python names one release
