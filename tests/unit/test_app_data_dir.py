"""mlfreeze_runtime.app.data_dir: where an app writes (never inside its bundle), and the snapshot
the self-test takes to prove an app's run wrote nothing inside the bundle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlfreeze_runtime import record
from mlfreeze_runtime.app import DATA_ENV, data_dir


def test_the_variable_overrides_and_the_folder_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "deep" / "data"))
    path = data_dir("search-server")
    assert path == (tmp_path / "deep" / "data").resolve() and path.is_dir()


def test_default_is_the_platforms_per_user_data_folder_for_the_app(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    path = data_dir("photo-search")
    assert path == Path(platformdirs.user_data_dir("photo-search", appauthor=False)).resolve()
    assert path.name == "photo-search" and path.is_dir() and tmp_path in path.parents


@pytest.mark.parametrize("name", ["", "a/b", "..", "a\\b"])
def test_a_path_like_app_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="plain name"):
        data_dir(name)


def test_snapshot_changes_name_new_changed_and_deleted_files(tmp_path: Path) -> None:
    (tmp_path / "_internal").mkdir()
    (tmp_path / "_internal" / "lib.so").write_bytes(b"x" * 10)
    (tmp_path / "app").write_bytes(b"exe")
    (tmp_path / "gone.txt").write_text("bye")
    (tmp_path / "RECORD").write_text("")  # not covered by RECORD itself: never reported
    before = record.snapshot(tmp_path)
    assert set(before) == {"_internal/lib.so", "app", "gone.txt"}
    (tmp_path / "_internal" / "photos.db").write_bytes(b"sqlite")
    (tmp_path / "_internal" / "lib.so").write_bytes(b"y" * 11)
    (tmp_path / "gone.txt").unlink()
    (tmp_path / "RECORD").write_text("changed")
    (tmp_path / "empty-dir").mkdir()
    os.utime(tmp_path / "app", ns=(1, 1))  # touched, same bytes: a changed mtime is a write too
    assert record.changes(before, record.snapshot(tmp_path)) == [
        "_internal/lib.so (changed)", "_internal/photos.db (new)", "app (changed)", "gone.txt (deleted)"]
    assert record.changes(before, before) == []
