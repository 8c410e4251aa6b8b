"""The grammar of size budgets (``[tool.mlfreeze.budgets]`` in pyproject.toml): text -> :class:`Budgets`.

Checked against a bundle by :mod:`mlfreeze.sizes.budget`.

```toml
[tool.mlfreeze.budgets]
full = "4.2 GB"                 # total per flavor (a string, an integer of bytes, or a table:)
lite = { total = "60 MB", components = { python = "20 MB" } }
components = { triton = "0 B" } # per component, every flavor
max_growth = "5%"               # vs --baseline: "5%" of the baseline total, or "200 MB"
measure = "disk"                # "disk" (exact, the default) or "compressed" (estimated)
```

Sizes use the one grammar of src/mlfreeze/units.py: decimal kB, MB, GB, TB (1000^n), binary KiB, MiB,
GiB, TiB (1024^n), or an integer of bytes; "1 GiB" and 1073741824 are the same budget.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlfreeze.schema import Table, read_toml
from mlfreeze.units import parse_size
from mlfreeze_runtime.buildinfo import FLAVORS

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
MEASURES = ("disk", "compressed")
WHERE = "tool.mlfreeze.budgets"


@dataclass(frozen=True, kw_only=True)
class Growth:
    percent: float | None = None
    bytes: int | None = None
    text: str = ""

    def allowed(self, baseline: int) -> int:
        if self.percent is not None:
            return int(baseline * self.percent / 100)
        return self.bytes or 0


@dataclass(frozen=True, kw_only=True)
class Budgets:
    path: Path | None = None
    totals: Mapping[str, int] = field(default_factory=dict)  # flavor -> bytes
    components: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # flavor|"*" -> comp -> bytes
    # flavor -> accelerator -> bytes, measured without the bundle's models (its model:* components)
    accelerators: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    max_growth: Growth | None = None
    measure: str = "disk"
    texts: Mapping[str, str] = field(default_factory=dict)  # dotted key -> as written


def _size(t: Table, key: str, texts: dict[str, str]) -> int:
    value = t.take(key, (str, int))
    try:
        n = parse_size(value)
    except ValueError as exc:
        raise t.error(key, f"is not a size: {exc}") from None
    texts[t.key(key)] = str(value)
    return n


def load_budgets(pyproject: Path) -> Budgets:
    """``[tool.mlfreeze.budgets]`` of ``pyproject`` (no table: no budgets)."""
    data = read_toml(pyproject)
    raw = data.get("tool", {}).get("mlfreeze", {}).get("budgets")
    if raw is None:
        return Budgets(path=pyproject)
    t = Table(raw, pyproject, WHERE)
    texts: dict[str, str] = {}
    totals: dict[str, int] = {}
    components: dict[str, dict[str, int]] = {}
    accelerators: dict[str, dict[str, int]] = {}
    for flavor in FLAVORS:
        value = t.opt(flavor, (str, int, dict), None)
        if value is None:
            continue
        if isinstance(value, dict):
            ft = Table(value, pyproject, t.key(flavor))
            if "total" in value:
                totals[flavor] = _size(ft, "total", texts)
            comps = ft.sub("components", required=False)
            components[flavor] = _sizes_of(comps, texts)
            accels = ft.sub("accelerators", required=False)
            accelerators[flavor] = _sizes_of(accels, texts)
            ft.done()
        else:
            totals[flavor] = _size(Table({flavor: value}, pyproject, WHERE), flavor, texts)
    components["*"] = _sizes_of(t.sub("components", required=False), texts)
    growth = None
    g = t.opt("max_growth", (str, int), None)
    if g is not None:
        m = _PERCENT.match(g) if isinstance(g, str) else None
        if m:
            growth = Growth(percent=float(m.group(1)), text=g)
        else:
            try:
                growth = Growth(bytes=parse_size(g), text=str(g))
            except ValueError:
                raise t.error("max_growth", f"is {g!r}; expected a percentage like '5%' or a size like '200 MB'") \
                    from None
    measure = t.opt("measure", str, "disk")
    if measure not in MEASURES:
        raise t.error("measure", f"is {measure!r}; allowed: {', '.join(MEASURES)}")
    t.done()
    return Budgets(path=pyproject, totals=totals, components=components, max_growth=growth, measure=measure,
                   texts=texts, accelerators=accelerators)


def _sizes_of(t: Table, texts: dict[str, str]) -> dict[str, int]:
    return {name: _size(Table({name: value}, t.path, t.where), name, texts)
            for name, value in sorted(t.rest().items())}
