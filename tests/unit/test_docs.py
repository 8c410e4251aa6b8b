"""The repository's docs stand alone: nothing refers to a design file outside the repository."""

from __future__ import annotations

from pathlib import Path

OUTSIDE = ("DESIGN" + ".md", "../" + "shared/")
FOLDERS = ("builder", "platforms", "specs", "runtime", "verify", "examples", "docs", "tests", "bench", ".github")
SUFFIXES = {".py", ".md", ".toml", ".json", ".spec", ".yml", ".yaml", ".txt"}


def test_no_file_refers_to_a_design_file_outside_the_repository(root: Path) -> None:
    files = [root / "README.md", root / "pyproject.toml", root / "noxfile.py"]
    for folder in FOLDERS:
        files += [p for p in (root / folder).rglob("*") if p.suffix in SUFFIXES and "__pycache__" not in p.parts]
    assert len(files) > 50
    found = [f"{p.relative_to(root)}: {word}" for p in files for word in OUTSIDE
             if word in p.read_text(encoding="utf-8", errors="replace")]
    assert found == []
