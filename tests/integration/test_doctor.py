"""`mlfreeze doctor` against real installed environments."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = os.environ.get("MLFREEZE_TEST_PLATFORM", "linux-cuda")


def _doctor(python: str, platform: str = PLATFORM) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DEVICE", "FORCE_CPU")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([python, "-m", "mlfreeze", "doctor", "--platform", platform],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def test_doctor_passes_in_this_environment():
    proc = _doctor(sys.executable)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"environment matches {PLATFORM}" in proc.stdout
    assert "FAIL" not in proc.stdout


def _layered_venv(env_dir: Path, *pip_args: str) -> str:
    """A venv that sees this environment's packages, after its own, with ``pip install *pip_args``."""
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # everything installed here stays visible, after the new venv's own site-packages; addsitedir
    # also runs this environment's .pth files (an editable install's finder, a layered stack)
    Path(site, "zz_parent.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    subprocess.run([python, "-m", "pip", "install", "-q", *pip_args], check=True)
    return python


def test_doctor_fails_with_two_onnxruntime_distributions(tmp_path):
    """A venv that sees this environment's packages plus a second onnxruntime distribution."""
    here = {d for d in ("onnxruntime", "onnxruntime-gpu") if _installed(d)}
    other = "onnxruntime" if "onnxruntime-gpu" in here else "onnxruntime-gpu"
    python = _layered_venv(tmp_path / "both", "--no-deps", other)
    proc = _doctor(python)
    assert proc.returncode == 2
    assert "2 distributions of the onnxruntime module are installed" in proc.stdout
    assert proc.stderr.count("\n") == 1 and "onnxruntime" in proc.stderr and "mismatch" in proc.stderr


def test_doctor_fails_naming_both_with_opencv_python_beside_the_headless_build(tmp_path):
    """What `pip install insightface` (or an app asking for opencv-python) does to the stack."""
    if not _installed("opencv-python-headless"):
        pytest.skip("this environment has no opencv-python-headless")
    python = _layered_venv(tmp_path / "cv", "--no-deps", "opencv-python")
    proc = _doctor(python)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAIL cv2")]
    assert "2 distributions of the cv2 module are installed" in line
    assert "opencv-python " in line and "opencv-python-headless " in line
    assert line.endswith("keep only opencv-python-headless (pip uninstall -y opencv-python)")
    assert proc.stderr.count("\n") == 1 and "(cv2)" in proc.stderr


def test_doctor_reports_wrong_build_for_another_profile():
    other = "linux-cpu" if PLATFORM != "linux-cpu" else "linux-cuda"
    proc = _doctor(sys.executable, other)
    assert proc.returncode == 2
    assert "FAIL torch build" in proc.stdout


def test_doctor_refuses_wrong_host():
    proc = _doctor(sys.executable, "win-cuda" if sys.platform != "win32" else "mac-arm64")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "mlfreeze plan --platform" in proc.stderr


def _installed(dist: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(dist)
    except md.PackageNotFoundError:
        return False
    return True


def test_a_package_that_fails_to_import_is_a_finding_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlfreeze.platforms.profiles import load_profile
    from mlfreeze.project import doctor

    def check_onnxruntime(profile: object):
        yield doctor.Finding(ok=True, check="onnxruntime", detail="installed")
        raise ImportError("numpy.core.multiarray failed to import\n(more lines)")

    monkeypatch.setattr(doctor, "CHECKS", (check_onnxruntime,))
    findings = doctor.diagnose(load_profile(PLATFORM))
    assert [(f.ok, f.check) for f in findings] == [(True, "onnxruntime"), (False, "onnxruntime")]
    assert findings[1].detail == "could not run: ImportError: numpy.core.multiarray failed to import"
