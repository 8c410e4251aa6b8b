"""The self-test entry point on a bundle-shaped models/ folder built from the demo set."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from demo_models import lay_out_demo_models

from mlfreeze_runtime.verify import probes, selftest

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "src" / "mlfreeze" / "specs"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """What the freezer lays out: models/<id>/<file>, models.json, goldens, _probes/."""
    return lay_out_demo_models(tmp_path / "models")


def test_selftest_passes_and_prints_json(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert selftest.main(["--models-dir", str(models_dir), "--json", "--strict"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is True and doc["summary"]["failed"] == 0
    # FAISS is checked when it is importable (it is in the tests environment, as in a full bundle)
    shipped = {"faiss"} if importlib.util.find_spec("faiss") is not None else set()
    assert {r["model"] for r in doc["results"]} == {"demo-clip", "demo-faces", "app"} | shipped
    assert [r["status"] for r in doc["results"] if r["model"] == "faiss"] == ["pass"] * len(shipped)
    assert [r["status"] for r in doc["results"] if r["check"] == "app_probe"] == ["skip"]  # no app in a checkout
    golden = [r for r in doc["results"] if r["check"] == "golden"]
    assert [r["status"] for r in golden] == ["pass", "pass"]


def test_selftest_uses_env_models_dir(models_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLFREEZE_MODELS_DIR", str(models_dir))
    monkeypatch.setattr(sys, "argv", ["/opt/b/photo-search-selftest"])
    assert selftest.main([]) == 0
    assert re.search(r"^photo-search-selftest: \d+ checks, 0 failed", capsys.readouterr().out, re.M)  # its own name


def test_selftest_names_a_missing_model_file(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (models_dir / "demo-clip" / "demo_clip.safetensors").unlink()
    assert selftest.main(["--models-dir", str(models_dir)]) == 1
    err = capsys.readouterr().err
    assert "FAILED demo-clip: files: FAIL" in err and "demo_clip.safetensors" in err


def test_selftest_names_a_missing_tokenizer_vocabulary(models_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from mlfreeze_runtime import clip

    # what a bundle without open_clip's data file looks like to the loader
    monkeypatch.setattr(clip, "tokenizer_vocab_path", lambda: tmp_path / "nowhere" / clip.TOKENIZER_VOCAB)
    assert selftest.main(["--models-dir", str(models_dir)]) == 1
    err = capsys.readouterr().err
    assert "demo-clip: load: FAIL" in err and "bpe_simple_vocab_16e6.txt.gz" in err


def test_selftest_without_the_vocabulary_file_fails_in_one_line(models_dir: Path, tmp_path: Path) -> None:
    """As in a bundle missing open_clip's data: open_clip itself cannot be imported without it."""
    import open_clip

    site = tmp_path / "site"
    shutil.copytree(Path(open_clip.__file__).parent, site / "open_clip",
                    ignore=shutil.ignore_patterns("bpe_simple_vocab_16e6.txt.gz", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFREEZE_MODELS_DIR")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    entry = "from mlfreeze_runtime.verify.selftest import main; raise SystemExit(main())"
    proc = subprocess.run([sys.executable, "-c", entry,
                           "--models-dir", str(models_dir)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "demo-clip: load: FAIL" in proc.stderr and "bpe_simple_vocab_16e6.txt.gz" in proc.stderr


def test_selftest_needs_bundled_probes(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the demo set uses synthetic probes only, so an empty _probes/ folder is enough for it
    shutil.rmtree(models_dir / probes.PROBES_DIRNAME)
    (models_dir / probes.PROBES_DIRNAME).mkdir()
    assert selftest.main(["--models-dir", str(models_dir)]) == 0
    capsys.readouterr()
    written = probes.copy_probe_inputs(models_dir / probes.PROBES_DIRNAME)
    assert {p.name for p in written} >= {"insightface_t1.jpg", "skimage_astronaut.png"}
    src = probes.probe_path("insightface:t1")
    assert hashlib.sha256(src.read_bytes()).digest() == hashlib.sha256(
        (models_dir / probes.PROBES_DIRNAME / "insightface_t1.jpg").read_bytes()).digest()


def test_selftest_without_index_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert selftest.main(["--models-dir", str(tmp_path)]) == 2
    assert "models.json is missing" in capsys.readouterr().err


def test_selftest_with_no_models_or_a_bad_device_is_a_usage_error(models_dir: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from mlfreeze_runtime import device
    from mlfreeze_runtime.verify.bundle import write_models_index

    monkeypatch.setenv("DEVICE", "tpu")
    monkeypatch.setattr(sys, "argv", ["selftest"])
    device.reset()  # get_device() caches its answer for the process
    assert selftest.main(["--models-dir", str(models_dir)]) == 2
    assert capsys.readouterr().err.strip() == \
        "selftest: error: DEVICE='tpu' is not a device; allowed: auto, cpu, cuda, cuda:N (N = 0, 1, ...), mps"
    monkeypatch.delenv("DEVICE")
    device.reset()
    write_models_index(tmp_path / "empty", [], set_name="none")
    assert selftest.main(["--models-dir", str(tmp_path / "empty")]) == 2  # passing nothing is not a pass
    assert "lists no models" in capsys.readouterr().err


def test_demo_face_models_regenerate_bit_identical(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_demo_models", SPECS / "demo" / "make_demo_models.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.make_detector(tmp_path / "det_10g.onnx")
    mod.make_recognizer(tmp_path / "w600k_r50.onnx")
    for name in ("det_10g.onnx", "w600k_r50.onnx"):
        assert (tmp_path / name).read_bytes() == (SPECS / "demo" / "faces" / name).read_bytes(), name


EXAMPLES = ROOT / "examples"


def _report(capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_selftest_probes_the_real_app_through_its_own_code(models_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """photo_search answers --mlfreeze-probe with its own embedders; every row matches the self-test's."""
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLES))
    app = f"{sys.executable} -m photo_search"
    assert selftest.main(["--models-dir", str(models_dir), "--json", "--app", app]) == 0
    doc, _ = _report(capsys)
    probe = {r["check"]: r for r in doc["results"] if r["model"] == "app photo_search"}
    assert {k: r["status"] for k, r in probe.items()} == \
        {"app_probe.text": "pass", "app_probe.image": "pass", "app_probe.face": "pass"}
    captions = tomllib.loads((SPECS / "models.toml").read_text())["models"]["demo-clip"]["verify"]["zero_shot"]
    assert probe["app_probe.text"]["got"].startswith(f"{len(captions)} inputs, min cosine 1.0")
    assert doc["context"]["app"] == app


FAKE_APP = """
import sys
import numpy as np
from mlfreeze_runtime.app import handle_probe

def texts(xs):
    v = np.random.default_rng(0).normal(size=(len(xs), 64))
    return v / np.linalg.norm(v, axis=1, keepdims=True)

sys.exit(handle_probe(sys.argv[1:], embed_texts=texts))
"""


def test_an_app_that_disagrees_fails_naming_app_and_input(models_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "wrong-app.py"
    script.write_text(FAKE_APP)
    assert selftest.main(["--models-dir", str(models_dir), "--json", "--app", f"{sys.executable} {script}"]) == 1
    doc, err = _report(capsys)
    probe = {r["check"]: r for r in doc["results"] if r["model"] == "app wrong-app.py"}
    assert probe["app_probe.text"]["status"] == "fail"
    assert probe["app_probe.text"]["got"].startswith("'a red circle': cosine")  # the first demo caption
    assert probe["app_probe.image"]["status"] == probe["app_probe.face"]["status"] == "skip"
    assert "FAILED app wrong-app.py: app_probe.text: FAIL" in err


def test_an_app_that_fails_or_is_missing_fails_the_selftest(models_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "broken-app.py"
    script.write_text("import sys\nprint('broken-app: error: cannot load its models', file=sys.stderr)\nsys.exit(3)\n")
    assert selftest.main(["--models-dir", str(models_dir), "--app", f"{sys.executable} {script}"]) == 1
    err = capsys.readouterr().err
    assert "FAILED app broken-app.py: app_probe: FAIL" in err and "exit 3: broken-app: error: cannot load" in err

    # frozen, the self-test runs inside <app> and probes that executable; absent here, so the
    # self-test fails naming it
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(bundle_dir / "photo-search"))
    assert selftest.main(["--models-dir", str(models_dir)]) == 1
    err = capsys.readouterr().err
    assert "FAILED app photo-search: app_probe: FAIL" in err and str(bundle_dir / "photo-search") in err


def test_selftest_prints_no_third_party_deprecation_warnings(models_dir: Path, tmp_path: Path) -> None:
    """With every warning shown (-W default), a passing self-test writes nothing on stderr: insightface's
    call into scikit-image's deprecated `estimate` (FutureWarning) is filtered."""
    entry = "from mlfreeze_runtime.verify.selftest import main; raise SystemExit(main())"
    env = {k: v for k, v in os.environ.items() if k != "MLFREEZE_MODELS_DIR"}
    proc = subprocess.run([sys.executable, "-W", "default", "-c", entry, "--models-dir", str(models_dir),
                           "--no-app-probe"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
