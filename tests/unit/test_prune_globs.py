"""Prune globs never cross a folder with ``?`` or ``*``, and the ``platforms`` filter selects rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfreeze.bundle.prune import PruneConfig, Rule, load_prune, matches
from mlfreeze.errors import ConfigError
from mlfreeze.globs import compile_glob


@pytest.mark.parametrize(("pattern", "path", "hit"), [
    ("a?c", "abc", True),
    ("a?c", "a/c", False),  # ? is one character inside a segment, never the separator
    ("torch/lib?x.so", "torch/lib/x.so", False),
    ("torch/lib?x.so", "torch/libAx.so", True),
    ("??", "a/", False),
    ("?", "/", False),
    ("lib/?", "lib/a", True),
    ("lib/?", "lib/a/b", False),
    ("*/?.so", "a/b/c.so", False),
    ("**/?.so", "a/b/c.so", True),  # only ** spans folders
])
def test_question_mark_never_crosses_a_slash(pattern: str, path: str, hit: bool) -> None:
    assert bool(compile_glob(pattern).match(path)) is hit


def test_question_mark_prunes_within_one_folder_on_a_real_tree(tmp_path: Path) -> None:
    for rel in ("a/b", "axb", "a/xb", "ayb/keep"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    rule = Rule(name="r", why="", globs=("a?b",), flavors=(), accelerators=(), platforms=())
    assert sorted(p.relative_to(tmp_path).as_posix() for p in matches(tmp_path, rule)) == ["axb", "ayb"]


def _rule(name: str, **kw: tuple[str, ...]) -> Rule:
    return Rule(name=name, why="", globs=("x",), flavors=kw.get("flavors", ()),
                accelerators=kw.get("accelerators", ()), platforms=kw.get("platforms", ()))


def test_the_platforms_filter_selects_only_the_named_platforms() -> None:
    config = PruneConfig(path=Path("p.toml"), excludes={}, hiddenimports={}, rules=(
        _rule("everywhere"),
        _rule("windows-only", platforms=("win-cpu", "win-cuda")),
        _rule("linux-cpu-full", platforms=("linux-cpu",), flavors=("full",)),
        _rule("cuda-on-linux-cuda", platforms=("linux-cuda",), accelerators=("cuda",)),
    ))

    def names(flavor: str, accelerator: str, platform: str) -> list[str]:
        return [r.name for r in config.select(flavor=flavor, accelerator=accelerator, platform=platform)]

    assert names("full", "cpu", "win-cpu") == ["everywhere", "windows-only"]
    assert names("full", "cuda", "win-cuda") == ["everywhere", "windows-only"]
    assert names("full", "cpu", "linux-cpu") == ["everywhere", "linux-cpu-full"]
    assert names("lite", "cpu", "linux-cpu") == ["everywhere"]  # every filter must hold
    assert names("full", "cuda", "linux-cuda") == ["everywhere", "cuda-on-linux-cuda"]
    assert names("full", "cpu", "linux-cuda") == ["everywhere"]
    assert names("full", "mps", "mac-arm64") == ["everywhere"]


def test_platforms_load_from_the_prune_file_and_select(tmp_path: Path) -> None:
    p = tmp_path / "prune.toml"
    p.write_text('[[rule]]\nname = "mac-only"\nglobs = ["x"]\nplatforms = ["mac-arm64", "mac-x64"]\n'
                 '[[rule]]\nname = "all"\nglobs = ["y"]\n')
    config = load_prune(p)
    assert config.rules[0].platforms == ("mac-arm64", "mac-x64") and config.rules[1].platforms == ()
    assert [r.name for r in config.select(flavor="full", accelerator="mps", platform="mac-arm64")] == ["mac-only",
                                                                                                      "all"]
    assert [r.name for r in config.select(flavor="full", accelerator="cpu", platform="linux-cpu")] == ["all"]


def test_an_unknown_platform_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    p = tmp_path / "prune.toml"
    p.write_text('[[rule]]\nname = "a"\nglobs = ["x"]\nplatforms = ["linux"]\n')
    with pytest.raises(ConfigError, match=r"rule\[0\]\.platforms.*'linux'.*linux-cpu"):
        load_prune(p)
