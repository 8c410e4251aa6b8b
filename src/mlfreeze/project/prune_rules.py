"""The grammar of prune rules: ``[[rule]]`` of specs/prune.toml and ``[tool.mlfreeze] prune``.

A rule removes files from a frozen bundle's ``_internal/`` after PyInstaller's COLLECT
(:mod:`mlfreeze.bundle.prune` applies them). Globs are POSIX paths relative to ``_internal/``:
``*`` and ``?`` stay inside one path component, ``**`` spans any number of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlfreeze.errors import ConfigError
from mlfreeze.platforms.profiles import ACCELERATORS, all_profiles
from mlfreeze.schema import Table
from mlfreeze_runtime.buildinfo import FLAVORS


@dataclass(frozen=True, kw_only=True)
class Rule:
    name: str
    why: str
    globs: tuple[str, ...]
    flavors: tuple[str, ...]  # () = every flavor
    accelerators: tuple[str, ...]  # () = every accelerator
    platforms: tuple[str, ...]  # () = every platform

    def applies_to(self, *, flavor: str, accelerator: str, platform: str) -> bool:
        return ((not self.flavors or flavor in self.flavors)
                and (not self.accelerators or accelerator in self.accelerators)
                and (not self.platforms or platform in self.platforms))


def parse_rules(raw: Any, path: Path, where: str) -> tuple[Rule, ...]:
    """Prune rules from a list of tables (prune.toml's ``[[rule]]``, ``[tool.mlfreeze] prune``)."""
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: key '{where}' must be a list of tables")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw_rule in enumerate(raw):
        rt = Table(raw_rule, path, f"{where}[{i}]")
        name = rt.take("name", str)
        if name in seen:
            raise rt.error("name", f"{name!r} is used by two rules")
        seen.add(name)
        rule = Rule(name=name, why=rt.opt("why", str, ""), globs=rt.strings("globs"),
                    flavors=rt.strings("flavors", ()), accelerators=rt.strings("accelerators", ()),
                    platforms=rt.strings("platforms", ()))
        if not rule.globs:
            raise rt.error("globs", "must name at least one pattern")
        for g in rule.globs:
            if g.startswith("/") or ".." in g.split("/") or "\\" in g or "<" in g or ">" in g:
                raise rt.error("globs", f"{g!r} must be a relative POSIX pattern inside _internal/ "
                                        "(*, ?, ** and literal names)")
        profiles = tuple(all_profiles()) if rule.platforms else ()
        for key, values, allowed in (("flavors", rule.flavors, FLAVORS),
                                     ("accelerators", rule.accelerators, ACCELERATORS),
                                     ("platforms", rule.platforms, profiles)):
            for v in values:
                if v not in allowed:
                    raise rt.error(key, f"names {v!r}; allowed: {', '.join(allowed)}")
        rt.done()
        rules.append(rule)
    return tuple(rules)
