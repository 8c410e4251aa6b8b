"""Prune rules: loading (errors name file and key), selection, glob semantics, bytes removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfreeze.bundle.prune import PRUNE_FILE, Rule, apply, load_prune, matches
from mlfreeze.errors import ConfigError
from mlfreeze.globs import compile_glob


def _rule(*globs: str, **kw: tuple[str, ...]) -> Rule:
    return Rule(name=kw.pop("name", "r"), why="", globs=globs, flavors=kw.get("flavors", ()),  # type: ignore[arg-type]
                accelerators=kw.get("accelerators", ()), platforms=kw.get("platforms", ()))


def _tree(root: Path, files: dict[str, int]) -> None:
    for rel, size in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * size)


def test_project_rules_never_prune_cuda_libraries_for_cuda_profiles() -> None:
    config = load_prune()
    for accel, platform in (("cuda", "linux-cuda"), ("cuda", "win-cuda"), ("cuda", "linux-cu118")):
        rules = config.select(flavor="full", accelerator=accel, platform=platform)
        globs = [g for r in rules for g in r.globs]
        assert not [g for g in globs if "nvidia" in g or "cuda" in g or "tensorrt" in g], globs
    cpu = [r.name for r in config.select(flavor="full", accelerator="cpu", platform="linux-cpu")]
    assert "cuda-libraries-on-cpu" in cpu and "triton" in cpu


def test_lite_excludes_the_ml_stack_and_full_imports_it_by_name() -> None:
    config = load_prune()
    for module in ("torch", "torchvision", "open_clip", "insightface", "onnxruntime", "faiss", "nvidia", "cuda"):
        assert module in config.excludes["lite"]
        assert module not in config.excludes["full"]
    # what an ordinary app imports at start stays in lite; the updater's own Analysis keeps all of it out
    for module in ("numpy", "PIL", "requests", "jinja2", "urllib3", "yaml", "certifi"):
        assert module not in config.excludes["lite"]
        assert module in config.excludes["updater"] or module == "urllib3"
    assert {"mlfreeze_runtime", "mlfreeze_runtime.verify.selftest"} <= set(config.hiddenimports["full"])
    # the stack's modules come per part the app uses (src/mlfreeze/platforms/stack.toml), not for every app
    assert not {"torch", "open_clip", "insightface", "faiss"} & set(config.hiddenimports["full"])
    assert [r.name for r in config.select(flavor="lite", accelerator="cuda", platform="linux-cuda")] == []


def test_rules_the_frozen_self_test_refuted_stay_out() -> None:
    globs = [g for r in load_prune().rules for g in r.globs]
    # import torch needs torch/bin/torch_shm_manager; skimage's lazy_loader reads its __init__.pyi
    assert "torch/bin" not in globs and not any(g.endswith(".pyi") for g in globs)


@pytest.mark.parametrize(("pattern", "path", "hit"), [
    ("triton", "triton", True),
    ("triton", "a/triton", False),
    ("**/*.h", "torch/include/ATen/core.h", True),
    ("**/*.h", "top.h", True),
    ("**/*.h", "x.hpp", False),
    ("torch/lib/libtorch_cuda*.so", "torch/lib/libtorch_cuda_linalg.so", True),
    ("torch/lib/libtorch_cuda*.so", "torch/lib/libtorch_cpu.so", False),
    ("torch/*/x", "torch/a/b/x", False),
    ("torch/**/x", "torch/a/b/x", True),
    ("a?c", "abc", True),
    ("a.c", "abc", False),
])
def test_glob_semantics(pattern: str, path: str, hit: bool) -> None:
    assert bool(compile_glob(pattern).match(path)) is hit


def test_apply_counts_the_bytes_each_rule_removed_and_keeps_the_rest(tmp_path: Path) -> None:
    _tree(tmp_path, {"triton/a.so": 1000, "triton/sub/b.py": 10, "torch/include/x.h": 7, "torch/y.h": 3,
                     "torch/lib/libtorch_cpu.so": 500, "open_clip/bpe_simple_vocab_16e6.txt.gz": 50})
    (tmp_path / "triton" / "link").symlink_to(tmp_path / "torch" / "lib" / "libtorch_cpu.so")
    removals = apply(tmp_path, (_rule("triton", name="triton"), _rule("**/*.h", "nothing/**", name="headers"),
                                _rule("missing", name="none")), log=False)
    link_size = len(str(tmp_path / "torch" / "lib" / "libtorch_cpu.so"))
    assert [(r.rule, r.bytes, r.paths) for r in removals] == [
        ("triton", 1010 + link_size, 1), ("headers", 10, 2), ("none", 0, 0)]
    assert (tmp_path / "torch/lib/libtorch_cpu.so").stat().st_size == 500  # the link was not followed
    assert (tmp_path / "open_clip/bpe_simple_vocab_16e6.txt.gz").exists()
    assert not (tmp_path / "triton").exists()


def test_matches_reports_a_matched_directory_once(tmp_path: Path) -> None:
    _tree(tmp_path, {"torch/test/a": 1, "torch/test/deep/b": 1})
    assert matches(tmp_path, _rule("torch/test", "torch/test/**")) == [tmp_path / "torch" / "test"]


@pytest.mark.parametrize(("body", "needle"), [
    ('[excludes]\n[[rule]]\nname = "a"\nglobs = ["/abs"]\n', "rule[0].globs"),
    ('[excludes]\n[[rule]]\nname = "a"\nglobs = ["../up"]\n', "rule[0].globs"),
    ('[excludes]\n[[rule]]\nname = "a"\nglobs = []\n', "rule[0].globs"),
    ('[excludes]\n[[rule]]\nname = "a"\nglobs = ["x"]\nflavors = ["fat"]\n', "rule[0].flavors"),
    ('[excludes]\n[[rule]]\nname = "a"\nglobs = ["lib/<x"]\n', "rule[0].globs"),
    ('[excludes]\n[[rule]]\nname = "a"\nglobs = ["x"]\nplatforms = ["linux-cpuu"]\n', "rule[0].platforms"),
    ('[excludes]\n[[rule]]\nname = "a"\nglobs = ["x"]\ncolour = 1\n', "rule[0].colour"),
    ('[excludes]\n[[rule]]\nname = "a"\nglobs = ["x"]\n[[rule]]\nname = "a"\nglobs = ["y"]\n', "rule[1].name"),
    ('[excludes]\nmedium = ["x"]\n', "excludes.medium"),
])
def test_bad_prune_files_name_the_file_and_key(tmp_path: Path, body: str, needle: str) -> None:
    path = tmp_path / "prune.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_prune(path)
    assert str(path) in err.value.message and needle in err.value.message


def test_project_prune_file_loads() -> None:
    assert load_prune(PRUNE_FILE).rules


def test_a_link_into_what_a_rule_removed_goes_with_it(tmp_path: Path) -> None:
    """PyInstaller links _internal/libtriton.so to triton/_C/libtriton.so; pruning triton/ must not leave
    the link dangling (RECORD refuses a bundle that carries one). Other links, and a link that dangled
    before, are not the rule's doing."""
    (tmp_path / "triton" / "_C").mkdir(parents=True)
    (tmp_path / "triton" / "_C" / "libtriton.so").write_bytes(b"x" * 10)
    (tmp_path / "libtriton.so").symlink_to("triton/_C/libtriton.so")
    (tmp_path / "keep.so").write_bytes(b"k")
    (tmp_path / "libkeep.so").symlink_to("keep.so")
    (tmp_path / "old.so").symlink_to("missing.so")
    rule = Rule(name="triton", why="", globs=("triton",), flavors=(), accelerators=(), platforms=())
    [removal] = apply(tmp_path, (rule,), log=False)
    assert removal.paths == 2 and removal.bytes == 10
    assert not (tmp_path / "libtriton.so").is_symlink()
    assert (tmp_path / "libkeep.so").resolve() == (tmp_path / "keep.so").resolve()
    assert (tmp_path / "old.so").is_symlink()  # dangled before: left for RECORD to refuse, naming it
