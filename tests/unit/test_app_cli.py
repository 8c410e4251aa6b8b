"""photo-search CLI in-process, with the ML stack blocked (the lite bundle's behaviour).

``sys.modules[name] = None`` makes ``import name`` fail at once, as it does in a bundle
that does not ship it. The same behaviour is checked in a real subprocess with a Python
that has no torch in tests/integration/test_app_lite.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from photo_search import __version__, embed
from photo_search.cli import INDEX_ENV, default_index_path, main
from photo_search.models import MODELS_ENV

ML = ("numpy", "PIL", "torch", "open_clip", "faiss", "onnxruntime", "insightface", "cv2")


@pytest.fixture
def lite(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ML:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(embed, "_IMPORT_ERRORS", {})
    monkeypatch.delenv(MODELS_ENV, raising=False)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    (d / "trip").mkdir(parents=True)
    (d / ".hidden").mkdir()
    for name in ("Beach_Sunset.png", "dog-park.jpg", "trip/cat on sofa.PNG", ".hidden/sunset.png", "notes.txt"):
        (d / name).write_bytes(b"not really an image")
    return d


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_lite_index_then_search_by_name(lite: None, photos: Path, tmp_path: Path, capsys) -> None:
    idx = tmp_path / "idx"
    rc, out, err = _run(capsys, "index", str(photos), "--index", str(idx), "--json")
    assert rc == 0
    summary = json.loads(out)
    assert summary["mode"] == "names" and summary["images"] == 3 and summary["faces"] == 0
    assert "CLIP search unavailable: cannot import" in err
    rc, out, err = _run(capsys, "search", "SUNSET", "--index", str(idx))
    assert rc == 0
    assert out.splitlines() == [f"1.0000  {photos / 'Beach_Sunset.png'}"]  # hidden folder not indexed
    assert "matching file names" in err
    rc, out, _ = _run(capsys, "search", "cat dog", "--index", str(idx), "--json", "-k", "1")
    res = json.loads(out)
    assert res["mode"] == "names" and len(res["results"]) == 1
    assert res["results"][0]["score"] == 0.5
    # indexing the same folder again replaces its entries instead of adding duplicates
    assert _run(capsys, "index", str(photos), "--index", str(idx))[0] == 0
    data = json.loads((idx / "index.json").read_text())
    assert len(data["images"]) == 3 and len(set(data["images"])) == 3


def test_lite_faces_is_unavailable_with_exit_3(lite: None, photos: Path, capsys) -> None:
    rc, out, err = _run(capsys, "faces", str(photos))
    assert rc == 3 and out == ""
    assert err.startswith("photo-search: error: face features unavailable: cannot import numpy")
    assert len(err.strip().splitlines()) == 1


def test_lite_health(lite: None, capsys) -> None:
    rc, out, _ = _run(capsys, "--health")
    assert rc == 0
    h = json.loads(out)
    assert h["app"] == "photo-search" and h["version"] == __version__
    assert h["ml_available"] is False
    assert "cannot import" in h["ml_reason"] and "torch" in h["ml_reason"]
    assert h["models_dir"] is None and h["models_dir_source"] == "none"
    assert h["features"]["name_search"]["available"] is True
    assert h["features"]["clip_search"]["available"] is False
    assert h["ml_libraries"]["torch"].startswith(("ModuleNotFoundError", "ImportError"))
    assert "device" in h["device"]


def test_usage_errors_are_one_line_exit_2(lite: None, tmp_path: Path, capsys) -> None:
    rc, _, err = _run(capsys, "index", str(tmp_path / "nope"), "--index", str(tmp_path / "i"))
    assert rc == 2 and err.strip() == f"photo-search: error: {tmp_path / 'nope'} is not a folder"
    rc, _, err = _run(capsys, "search", "x", "--index", str(tmp_path / "i"))
    assert rc == 2 and "no index at" in err and "photo-search index DIR" in err
    rc, _, err = _run(capsys, "search", "  ", "--index", str(tmp_path / "i"))
    assert rc == 2 and "search text is empty" in err
    assert not (tmp_path / "i").exists()
    with pytest.raises(SystemExit) as exc:
        main(["search", "x", "-k", "0"])
    assert exc.value.code == 2
    assert main([]) == 2


def test_bad_models_json_is_exit_2_even_in_names_mode(photos: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    # ML libraries "import" (pretend) but the configured models dir is broken: that is a config error
    monkeypatch.setattr(embed, "_IMPORT_ERRORS", {m: None for m in ML})
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "models.json").write_text('{"schema_version": 7}')
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "m"))
    rc, _, err = _run(capsys, "index", str(photos), "--index", str(tmp_path / "i"))
    assert rc == 2 and "schema_version: must be 1, got 7" in err
    assert not (tmp_path / "i").exists()


def test_default_index_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(INDEX_ENV, str(tmp_path / "x"))
    assert default_index_path() == tmp_path / "x"
    monkeypatch.delenv(INDEX_ENV)
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
        assert default_index_path() == tmp_path / "data" / "photo-search" / "index"


def test_group_faces_groups_same_embeddings() -> None:
    np = pytest.importorskip("numpy")
    a = np.array([1.0, 0.0, 0.0], dtype="float32")
    b = np.array([0.0, 1.0, 0.0], dtype="float32")
    a2 = np.array([0.95, 0.3122, 0.0], dtype="float32")  # cos(a, a2) ~ 0.95
    labels = embed.group_faces([a, b, None, a2, b], threshold=0.5)
    assert labels == [1, 2, 0, 1, 2]
    assert embed.group_faces([a, a2], threshold=0.99) == [1, 2]


def test_onnx_providers_naming_a_missing_provider_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from mlfreeze_runtime import device
    from photo_search.embed import onnx_providers
    from photo_search.errors import UsageError

    monkeypatch.setenv("ONNX_PROVIDERS", "FooExecutionProvider")
    device.reset()
    try:
        with pytest.raises(UsageError, match="ONNX_PROVIDERS names FooExecutionProvider"):
            onnx_providers()
    finally:
        monkeypatch.delenv("ONNX_PROVIDERS")
        device.reset()
