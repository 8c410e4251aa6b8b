"""The nox session factory's pure helpers: exit codes, the session's own arguments."""

from __future__ import annotations

import pytest

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


class _Venv:
    def __init__(self, location):
        self.location = str(location)


class _Session:
    """What install() uses of a nox session: its venv's location, install and run (recorded)."""

    def __init__(self, venv):
        self.virtualenv = _Venv(venv)
        self.calls = []

    def install(self, *args):
        self.calls.append(("install", *args))

    def run(self, *args):
        self.calls.append(("run", *args))


def _lock(root, names):
    (root / "locks").mkdir(exist_ok=True)
    (root / "locks" / "linux-cuda.txt").write_text("".join(f"{n}==1.0 \\\n    --hash=sha256:00\n" for n in names))


COMMANDS = [("pip", "install", "--require-hashes", "--no-deps", "-r", "locks/linux-cuda.txt"),
            ("pip", "install", "--no-deps", "--force-reinstall", "build/mlfreeze-0.1.0-py3-none-any.whl"),
            ("pip", "install", "--no-deps", "--force-reinstall", ".")]


def test_a_reused_venv_skips_what_it_already_installed(tmp_path):
    root, venv = tmp_path / "p", tmp_path / "venv"
    venv.mkdir()
    (root / "build").mkdir(parents=True)
    (root / "build" / "mlfreeze-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
    (root / "pyproject.toml").write_text('[project]\nname = "p"\n')
    _lock(root, ["numpy", "faiss-cpu"])
    first = _Session(venv)
    sessions.install(first, COMMANDS, root=root)
    assert [c[0] for c in first.calls] == ["install"] * 3
    again = _Session(venv)
    sessions.install(again, COMMANDS, root=root)
    assert again.calls == [], "nothing changed: nothing is reinstalled"
    (root / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "2"\n')
    project = _Session(venv)
    sessions.install(project, COMMANDS, root=root)
    assert project.calls == [("install", "--no-deps", "--force-reinstall", ".")]
    _lock(root, ["numpy", "pillow"])  # faiss-cpu dropped from the lock
    relock = _Session(venv)
    sessions.install(relock, COMMANDS, root=root)
    assert relock.calls == [("run", "python", "-m", "pip", "uninstall", "--yes", "faiss-cpu"),
                            ("install", "--require-hashes", "--no-deps", "-r", "locks/linux-cuda.txt")]


def test_a_failed_install_is_not_recorded_and_the_checkout_always_reinstalls_itself(tmp_path):
    root, venv = tmp_path / "p", tmp_path / "venv"
    venv.mkdir()
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "mlfreeze"\n')
    _lock(root, ["numpy"])
    commands = [COMMANDS[0], COMMANDS[2]]

    class _Failing(_Session):
        def install(self, *args):
            raise RuntimeError("pip failed")

    with pytest.raises(RuntimeError):
        sessions.install(_Failing(venv), commands, root=root, always_project=True)
    retry = _Session(venv)
    sessions.install(retry, commands, root=root, always_project=True)
    assert len(retry.calls) == 2, "nothing was recorded as installed by the failed run"
    again = _Session(venv)
    sessions.install(again, commands, root=root, always_project=True)
    assert again.calls == [("install", "--no-deps", "--force-reinstall", ".")]


def test_session_python_is_the_projects(tmp_path):
    from mlfreeze.platforms.profiles import load_profile

    (tmp_path / "app.py").write_text("")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\nrequires-python = ">=3.12"\n'
                                             '[tool.mlfreeze]\napp = "x"\nentry = "app.py"\nuses = ["clip"]\n')
    assert sessions.session_python(tmp_path, load_profile("linux-cuda")) == "3.12"
    assert sessions.session_python(tmp_path, load_profile("linux-cu118")) == "3.12"
    (tmp_path / "pyproject.toml").write_text((tmp_path / "pyproject.toml").read_text().replace(">=3.12", ">=3.13"))
    assert sessions.session_python(tmp_path, load_profile("linux-cu118")) is None  # refused in the session body
