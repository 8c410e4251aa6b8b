"""The self-test's side of the app probe: which app, its name, and the comparison (pure)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlfreeze_runtime.verify import selftest

LABELS = {"text": ["'a cat'", "'a dog'"], "face": ["insightface:t1", "synthetic:blank"]}
REF = {"text": [[1.0, 0.0], [0.0, 1.0]], "face": [[0.6, 0.8], None]}


def _by_check(results: list) -> dict[str, tuple[str, str]]:
    return {r.check: (r.status, r.got) for r in results}


def test_identical_rows_pass() -> None:
    got = _by_check(selftest.compare("app x", LABELS, REF, {"text": REF["text"], "face": REF["face"]}))
    assert got["app_probe.text"] == ("pass", "2 inputs, min cosine 1.000000")
    assert got["app_probe.face"][0] == "pass"


@pytest.mark.parametrize(("answer", "check", "message"), [
    ({"text": [[1.0, 0.0], [0.02, 1.0]]}, "app_probe.text", "'a dog': cosine 0.99980"),  # cos 0.9998 < 0.9999
    ({"text": [[2.0, 0.0], [0.0, 1.0]]}, "app_probe.text", "'a cat': norm 2.00000"),
    ({"text": [[1.0, 0.0]]}, "app_probe.text", "1 rows for 2 inputs"),
    ({"face": [None, None]}, "app_probe.face", "insightface:t1: no face in the app, a face in the self-test"),
    ({"face": [[0.6, 0.8], [1.0, 0.0]]}, "app_probe.face", "synthetic:blank: a face in the app"),
])
def test_disagreement_fails_naming_the_input(answer: dict, check: str, message: str) -> None:
    got = _by_check(selftest.compare("app x", LABELS, REF, answer))
    assert got[check][0] == "fail" and got[check][1].startswith(message)


def test_threshold_edge_is_inclusive() -> None:
    import math

    c = 0.9999
    row = [c, math.sqrt(1 - c * c)]
    ref = {"text": [[1.0, 0.0]]}
    status, _ = _by_check(selftest.compare("app x", {"text": ["'t'"]}, ref, {"text": [row]}))["app_probe.text"]
    assert status == "pass"


def test_parts_the_app_does_not_use_skip_but_answering_nothing_fails() -> None:
    got = _by_check(selftest.compare("app x", LABELS, REF, {"text": REF["text"]}))
    assert got["app_probe.face"][0] == "skip" and got["app_probe.text"][0] == "pass" and "app_probe" not in got
    got = _by_check(selftest.compare("app x", LABELS, REF, {}))
    assert got["app_probe"][0] == "fail"


def test_which_app_is_probed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(selftest.APP_ENV, raising=False)
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert selftest.app_command(None) is None
    assert selftest.app_command("python -m photo_search") == ["python", "-m", "photo_search"]
    monkeypatch.setenv(selftest.APP_ENV, "/opt/app --flag")
    assert selftest.app_command(None) == ["/opt/app", "--flag"]
    monkeypatch.delenv(selftest.APP_ENV)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    # frozen, the self-test runs inside <app> (its launcher execs it): the app is this executable
    monkeypatch.setattr(sys, "executable", str(tmp_path / "photo-search"))
    assert selftest.app_command(None) == [str((tmp_path / "photo-search").resolve())]
    assert selftest.app_label(["python3", "-m", "photo_search"]) == "app photo_search"
    assert selftest.app_label([str(tmp_path / "photo-search")]) == "app photo-search"


def test_help_uses_the_real_program_name(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["/b/photo-search-selftest", "--help"])
    with pytest.raises(SystemExit) as exit_:
        selftest.main(["--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: photo-search-selftest ")


# ---- FAISS: a known-answer search when the bundle ships it ----
def _fake_faiss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    pkg = tmp_path / "fakes" / "faiss"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path / "fakes"))
    monkeypatch.delitem(sys.modules, "faiss", raising=False)


def test_faiss_known_answer_search_passes_on_the_real_faiss() -> None:
    pytest.importorskip("faiss")
    (result,) = selftest.faiss_check()
    assert (result.model, result.check, result.status) == ("faiss", "known_answer_search", "pass")
    assert result.got.startswith("ids [3, 1]")


def test_faiss_that_cannot_load_fails_the_selftest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_faiss(tmp_path, monkeypatch, "raise ImportError('libopenblaso-r0.so: cannot open shared object file')\n")
    (result,) = selftest.faiss_check()
    assert result.status == "fail" and "libopenblaso-r0.so: cannot open shared object file" in result.got


def test_faiss_with_a_wrong_answer_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_faiss(tmp_path, monkeypatch, (
        "import numpy as np\n"
        "class IndexFlatIP:\n"
        "    def __init__(self, d): pass\n"
        "    def add(self, x): pass\n"
        "    def search(self, q, k): return np.zeros((len(q), k)), np.zeros((len(q), k), dtype=np.int64)\n"))
    (result,) = selftest.faiss_check()
    assert result.status == "fail" and result.got.startswith("ids [0, 0]")


def test_a_bundle_without_faiss_has_no_faiss_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faiss" else object())
    assert selftest.faiss_check() == []
