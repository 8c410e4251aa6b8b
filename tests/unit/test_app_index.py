"""photo_search.index: the sidecar, model checks and name search (no ML stack)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from photo_search.errors import IndexMismatch, UsageError
from photo_search.index import SIDECAR, PhotoIndex, check_models, is_under, name_score, search_names

IMAGES = ["/p/Beach_Sunset.png", "/p/dog-park.jpg", "/p/cat on sofa.png", "/p/sunset/dog.png", "/p/IMG_0001.JPG"]


def test_whole_query_in_name_scores_one_case_insensitively() -> None:
    assert name_score("SUNSET", "/p/Beach_Sunset.png") == 1.0
    assert name_score("img_0001", "/p/IMG_0001.JPG") == 1.0
    # only the file name counts, not the folders
    assert name_score("sunset", "/p/sunset/dog.png") == 0.0


def test_token_share_and_ordering() -> None:
    assert name_score("cat sofa dog", "/p/cat on sofa.png") == pytest.approx(2 / 3, abs=1e-4)
    hits = search_names(IMAGES, "cat sofa dog", k=10)
    assert [p for _, p in hits] == ["/p/cat on sofa.png", "/p/dog-park.jpg", "/p/sunset/dog.png"]
    assert [s for s, _ in hits] == sorted((s for s, _ in hits), reverse=True)
    assert search_names(IMAGES, "cat sofa dog", k=1) == [hits[0]]
    assert search_names(IMAGES, "zebra", k=5) == []
    assert search_names(IMAGES, "  ", k=5) == []


def test_names_index_round_trip_and_swap(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    assert PhotoIndex.read_sidecar(path) is None
    PhotoIndex(path=path, images=IMAGES[:2]).save()
    first = PhotoIndex.read_sidecar(path)
    assert first is not None and first.images == IMAGES[:2] and first.mode == "names"
    PhotoIndex(path=path, images=IMAGES, created=first.created).save()
    again = PhotoIndex.read_sidecar(path)
    assert again is not None and again.images == IMAGES and again.created == first.created
    # the swap leaves nothing behind but the index itself
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    assert sorted(p.name for p in path.iterdir()) == [SIDECAR]
    raw = json.loads((path / SIDECAR).read_text())
    assert raw["models"] == {"clip": None, "faces": None} and raw["app"] == "photo-search"


def test_refuses_foreign_or_broken_dirs(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(UsageError, match="is not a photo-search index"):
        PhotoIndex.read_sidecar(tmp_path / "other")
    with pytest.raises(UsageError, match="x.txt is a file; --index names a folder"):
        PhotoIndex.read_sidecar(tmp_path / "other" / "x.txt")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / SIDECAR).write_text("{broken")
    with pytest.raises(UsageError, match="re-index with --rebuild"):
        PhotoIndex.read_sidecar(bad)
    (bad / SIDECAR).write_text(json.dumps({"format": 99, "models": {}, "images": []}))
    with pytest.raises(UsageError, match="index format 99"):
        PhotoIndex.read_sidecar(bad)


def test_model_check_names_both_sides(tmp_path: Path) -> None:
    a = {"clip": {"id": "a", "arch": "x", "sha256": "1" * 64}, "faces": None}
    b = {"clip": {"id": "b", "arch": "x", "sha256": "2" * 64}, "faces": None}
    check_models(tmp_path, a, dict(a), ("clip", "faces"))
    with pytest.raises(IndexMismatch) as err:
        check_models(tmp_path, a, b, ("clip",))
    msg = err.value.message
    assert "clip model a (sha256 111111111111)" in msg and "clip model b (sha256 222222222222)" in msg
    assert "--rebuild" in msg and err.value.exit_code == 2
    with pytest.raises(IndexMismatch, match="no models"):
        check_models(tmp_path, {"clip": None, "faces": None}, b, ("clip",))
    # a faces-only difference matters for indexing but not for a clip search
    c = {**a, "faces": {"id": "f", "arch": None, "sha256": "3" * 64}}
    check_models(tmp_path, a, c, ("clip",))
    with pytest.raises(IndexMismatch):
        check_models(tmp_path, a, c, ("clip", "faces"))


def test_is_under(tmp_path: Path) -> None:
    assert is_under(str(tmp_path / "a" / "b.png"), tmp_path / "a")
    assert not is_under(str(tmp_path / "ab" / "b.png"), tmp_path / "a")


def test_stop_words_do_not_rank_names() -> None:
    """`search "a cat"` must not return astronaut.png: "a" occurs in nearly every file name."""
    from photo_search.index import query_tokens, search_names

    images = ["/p/astronaut.png", "/p/cat.png", "/p/coffee.png"]
    assert search_names(images, "a cat", 5) == [(1.0, "/p/cat.png")]
    assert search_names(images, "the coffee of a cat", 5) == [(0.5, "/p/cat.png"), (0.5, "/p/coffee.png")]
    assert query_tokens("a the") == ["a", "the"]  # only stop words: they are all there is
