"""A frozen lite bundle on the users' machines, proven on this one: its glibc floor in an older
distribution's root file system, spawn/forkserver children, and a windowed app without streams.

One real freeze of a tiny app built with ``console = false`` serves every test:

* **glibc floor.** A Debian 11 root (glibc 2.31), made with ``mmdebstrap --variant=extract`` and
  cached (``$MLFREEZE_TEST_CACHE``, default ``~/.cache/mlfreeze-tests``), runs the bundle's
  ``--health`` under bubblewrap. The floor BUILD-INFO records (what the audit computes from the ELF
  files) must predict the outcome exactly: above the root's glibc the run fails with the loader's
  ``GLIBC_`` message, at or below it the app answers. The audit refuses the bundle at the profile's
  floor naming the file, and at the root's glibc exactly when the run failed; the updater refuses
  the variant on a machine with the root's glibc exactly then too. (This machine's Python needs
  glibc 2.35, so here the prediction is "refused"; docs/benchmarks.md records the positive case,
  a bundle built with a Python compiled inside that root.)
* **spawn-safe.** The frozen app starts ``spawn`` and ``forkserver`` pools and processes and gets
  their results (``multiprocessing.freeze_support()`` runs in every bundle's first runtime hook).
* **windowed.** With stdout and stderr closed (what a windowed app gets), ``print``, ``logging``
  and ``warnings`` land in ``<MLFREEZE_DATA_DIR>/logs/tiny.log`` instead of raising.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from lite_projects import freeze_lite, host_profile, tiny_app

from mlfreeze import cli, hostinfo
from mlfreeze.bundle import glibc
from mlfreeze_runtime.update.variants import Machine, Variant, choose_variant

pytest.importorskip("PyInstaller")
pytestmark = pytest.mark.skipif(hostinfo.current().os != "linux", reason="glibc, bwrap and fork are Linux's")

APP = '''\
import json, logging, multiprocessing, sys, warnings


def square(x):
    return x * x


def main():
    if "--health" in sys.argv:
        print(json.dumps({"app": "tiny", "ml_available": False}))
    elif "--pools" in sys.argv:
        out = {}
        for method in ("spawn", "forkserver"):
            ctx = multiprocessing.get_context(method)
            with ctx.Pool(2) as pool:
                out[method] = pool.map(square, range(6))
            child = ctx.Process(target=square, args=(7,))
            child.start()
            child.join(60)
            out[method + "_process_exit"] = child.exitcode
        print(json.dumps(out))
    elif "--talk" in sys.argv:
        print("print to stdout")
        sys.stderr.write("write to stderr\\n")
        logging.basicConfig(level=logging.INFO)
        logging.getLogger("tiny").warning("a logging record")
        warnings.warn("a python warning")
        print(json.dumps({"stdout": type(sys.stdout).__name__, "same_log": sys.stdout is sys.stderr}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
RELEASE = "bullseye"  # Debian 11: glibc 2.31
CACHE = Path(os.environ.get("MLFREEZE_TEST_CACHE") or Path.home() / ".cache" / "mlfreeze-tests")
LOADER_MISSING = re.compile(r"version `GLIBC_(\d+\.\d+)' not found")


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("users")
    app = dataclasses.replace(tiny_app(root, APP, version="0.0.3"), console=False)
    bundle, kw = freeze_lite(root, app)
    return {"root": root, "bundle": bundle, "profile": kw["profile"],
            "params": json.loads((root / "build" / "params.json").read_text())}


@pytest.fixture(scope="module")
def bullseye(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Debian 11 root file system (libc6, zlib1g, libgcc-s1, libstdc++6), extracted from a cached tarball."""
    for tool in ("mmdebstrap", "bwrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: apt-get install -y mmdebstrap bubblewrap (.ci/run installs them)")
    tar = CACHE / f"debian-{RELEASE}-extract.tar"
    if not tar.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = tar.with_name(f"{tar.stem}.partial.tar")  # mmdebstrap picks the format by suffix
        done = subprocess.run(["mmdebstrap", "--quiet", "--variant=extract",
                               "--include=libc6,zlib1g,libgcc-s1,libstdc++6", RELEASE, str(partial)],
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, f"mmdebstrap failed: {done.stderr[-2000:]}"
        partial.replace(tar)
    root = tmp_path_factory.mktemp("bullseye") / "root"
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "-xf", str(tar)], check=True, timeout=300)
    return root


def _bwrap(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bwrap", "--bind", str(root), "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
                           "--chdir", "/tmp", *argv], env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_recorded_floor_predicts_the_run_in_a_debian_11_root(frozen: dict, bullseye: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bundle = frozen["bundle"]
    recorded = json.loads((bundle / "BUILD-INFO.json").read_text())["glibc"]
    computed = glibc.bundle_floor(bundle)
    assert recorded["floor"] == computed.glibc and recorded["file"] == computed.glibc_file
    root_glibc = glibc.provided_glibc(bullseye / "lib" / "x86_64-linux-gnu" / "libc.so.6")
    assert root_glibc == "2.31"
    runs = glibc.version_key(recorded["floor"]) <= glibc.version_key(root_glibc)

    shutil.copytree(bundle, bullseye / "opt" / bundle.name, symlinks=True)
    done = _bwrap(bullseye, f"/opt/{bundle.name}/tiny", "--health")
    assert (done.returncode == 0) == runs, (recorded, done.returncode, done.stderr[-500:])
    if runs:
        assert json.loads(done.stdout)["app"] == "tiny"
    else:
        missing = LOADER_MISSING.search(done.stderr)
        assert missing, done.stderr[-500:]
        assert glibc.version_key(root_glibc) < glibc.version_key(missing.group(1)) \
            <= glibc.version_key(recorded["floor"])

    # the audit: refused at the profile's floor naming the file; at the root's glibc exactly when it failed
    monkeypatch.delenv(glibc.FLOOR_ENV, raising=False)
    profile_floor = frozen["profile"].glibc_floor
    above_profile = glibc.version_key(recorded["floor"]) > glibc.version_key(profile_floor)
    assert cli.main(["audit", str(bundle)]) == (3 if above_profile else 0)
    out = capsys.readouterr().out
    if above_profile:
        line = next(ln for ln in out.splitlines() if ": glibc: " in ln)
        assert recorded["file"] in line and f"GLIBC_{recorded['floor']}" in line and profile_floor in line
    monkeypatch.setenv(glibc.FLOOR_ENV, root_glibc)
    assert cli.main(["audit", str(bundle)]) == (0 if runs else 3)
    capsys.readouterr()

    # the updater: a machine with the root's glibc refuses the variant exactly when the run failed
    variant = Variant(name=bundle.name, version="0.0.3", platform=frozen["profile"].name, flavor="lite", os="linux",
                      arch="x86_64", accelerator="cpu", glibc=recorded["floor"])
    chosen, reasons = choose_variant(Machine(os="linux", arch="x86_64", glibc=root_glibc), [variant])
    assert (chosen is not None) == runs, reasons
    if not runs:
        assert f"needs glibc {recorded['floor']} or newer, this machine has glibc {root_glibc}" in reasons[0]


def test_a_frozen_app_runs_spawn_and_forkserver_children(frozen: dict, tmp_path: Path) -> None:
    done = subprocess.run([str(frozen["bundle"] / "tiny"), "--pools"], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    squares = [x * x for x in range(6)]
    assert json.loads(done.stdout) == {"spawn": squares, "forkserver": squares,
                                       "spawn_process_exit": 0, "forkserver_process_exit": 0}


def test_a_windowed_app_without_streams_writes_its_log(frozen: dict, tmp_path: Path) -> None:
    assert frozen["params"]["console"] is False  # [tool.mlfreeze] console = false reaches the spec's EXE
    data = tmp_path / "data"
    # a windowed app starts with no stdout/stderr: close them, as Windows and Finder do
    done = subprocess.run(["/bin/sh", "-c", 'exec "$0" --talk >&- 2>&-', str(frozen["bundle"] / "tiny")],
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "MLFREEZE_DATA_DIR": str(data)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    log = (data / "logs" / "tiny.log").read_text(encoding="utf-8")
    for text in ("print to stdout", "write to stderr", "a logging record", "a python warning"):
        assert text in log, log
    assert json.loads(log.strip().splitlines()[-1]) == {"stdout": "TextIOWrapper", "same_log": True}
    # with its streams, the same app writes where it always did, and no log is made
    shutil.rmtree(data)
    done = subprocess.run([str(frozen["bundle"] / "tiny"), "--talk"], cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "MLFREEZE_DATA_DIR": str(data)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "print to stdout" in done.stdout and "write to stderr" in done.stderr
    assert not data.exists()


def test_the_host_profile_declares_a_floor() -> None:
    assert host_profile().glibc_floor == "2.28"
