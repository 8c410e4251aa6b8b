"""Prune rules as data (src/mlfreeze/specs/prune.toml): load them, select those for a build, apply them.

A rule removes files from a frozen bundle's ``_internal/`` after PyInstaller's COLLECT. Globs
are POSIX paths relative to ``_internal/``: ``*`` and ``?`` stay inside one path component,
``**`` spans any number of them, and a directory that matches is removed whole. Every removal
is proven by the frozen self-test that runs next (src/mlfreeze/bundle/selftest.py).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlfreeze.specs
from mlfreeze.globs import compile_glob
from mlfreeze.project.prune_rules import Rule, parse_rules
from mlfreeze.schema import Table, read_toml
from mlfreeze.units import format_size
from mlfreeze_runtime.buildinfo import FLAVORS

PRUNE_FILE = Path(mlfreeze.specs.__file__).resolve().parent / "prune.toml"
UPDATER = "updater"  # [excludes] updater: what <app>-update's own Analysis keeps out, in every flavor


@dataclass(frozen=True, kw_only=True)
class PruneConfig:
    path: Path
    excludes: dict[str, tuple[str, ...]]  # flavor (or "updater") -> modules kept out of the Analysis
    hiddenimports: dict[str, tuple[str, ...]]  # flavor -> modules imported by name at run time
    rules: tuple[Rule, ...]

    def select(self, *, flavor: str, accelerator: str, platform: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.applies_to(flavor=flavor, accelerator=accelerator, platform=platform))


@dataclass(frozen=True, kw_only=True)
class Removal:
    rule: str
    bytes: int
    paths: int


def load_prune(path: Path = PRUNE_FILE) -> PruneConfig:
    t = Table(read_toml(path), path)
    excludes: dict[str, tuple[str, ...]] = {}
    hidden: dict[str, tuple[str, ...]] = {}
    for key, out, names in (("excludes", excludes, (*FLAVORS, UPDATER)), ("hiddenimports", hidden, FLAVORS)):
        st = t.sub(key, required=False)
        out.update({name: st.strings(name, ()) for name in names})
        st.done()
    rules = parse_rules(t.opt("rule", list, []), path, "rule")
    t.done()
    return PruneConfig(path=path, excludes=excludes, hiddenimports=hidden, rules=tuple(rules))


def tree_bytes(path: Path) -> int:
    """On-disk bytes of a file or a tree; symbolic links count as themselves, never followed."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def matches(root: Path, rule: Rule) -> list[Path]:
    """Top-most paths under ``root`` matched by ``rule`` (a matched directory hides its contents)."""
    regexes = [compile_glob(g) for g in rule.globs]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel = base.relative_to(root).as_posix()
        keep_dirs = []
        for name in sorted(dirnames):
            relpath = f"{rel}/{name}" if rel != "." else name
            if any(r.match(relpath) for r in regexes):
                found.append(base / name)
            elif not os.path.islink(base / name):
                keep_dirs.append(name)
        dirnames[:] = keep_dirs
        for name in sorted(filenames):
            relpath = f"{rel}/{name}" if rel != "." else name
            if any(r.match(relpath) for r in regexes):
                found.append(base / name)
    return found


def dangling_links(root: Path) -> list[Path]:
    """Symbolic links under ``root`` whose target does not exist (sorted)."""
    return sorted(p for p in root.rglob("*") if p.is_symlink() and not p.exists())


def apply(root: Path, rules: tuple[Rule, ...], log: bool = True) -> list[Removal]:
    """Remove what each rule matches under ``root`` (a bundle's _internal/); report bytes per rule."""
    removals = []
    for rule in rules:
        paths = matches(root, rule)
        dangling_before = set(dangling_links(root)) if paths else set()
        size = 0
        for p in paths:
            if not (p.exists() or p.is_symlink()):
                continue  # inside something an earlier path of this rule removed
            size += tree_bytes(p)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        # links whose target this rule removed (PyInstaller links _internal/libtriton.so into triton/_C/):
        # a bundle never carries a dangling link (RECORD refuses one), so they go with their target
        dangling = [link for link in dangling_links(root) if link not in dangling_before] if paths else []
        for link in dangling:
            link.unlink()
        removals.append(Removal(rule=rule.name, bytes=size, paths=len(paths) + len(dangling)))
        if log:
            print(f"prune: {rule.name:<24} removed {format_size(size):>10} ({len(paths)} paths)", flush=True)
    return removals
