"""Size budgets checked against a bundle's size report, and the baseline regression diff.

The grammar of ``[tool.mlfreeze.budgets]`` is :mod:`mlfreeze.project.budgets`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlfreeze.errors import UsageError
from mlfreeze.project.budgets import WHERE, Budgets
from mlfreeze.units import GITHUB_ASSET_LIMIT, format_exact, format_size


@dataclass(frozen=True, kw_only=True)
class Check:
    what: str  # "total", "total:<accelerator>", "component:<name>", "growth" or "asset-limit"
    limit: int
    actual: int
    ok: bool
    line: str  # one line for the user


def _measure(bundle: Mapping[str, Any], measure: str, component: str | None = None) -> int:
    key = "disk_bytes" if measure == "disk" else "compressed_bytes"
    if component is None:
        return int(bundle[key])
    return sum(int(c[key]) for c in bundle["components"] if c["name"] == component)


def check_budgets(bundle: Mapping[str, Any], budgets: Budgets) -> list[Check]:
    """Budget checks for one bundle of a sizes report (``bundle`` is its JSON object)."""
    flavor = bundle.get("flavor")
    where = f"{budgets.path} [{WHERE}]" if budgets.path else f"[{WHERE}]"
    m = budgets.measure
    name = bundle["name"]
    checks: list[Check] = []
    if isinstance(flavor, str) and flavor in budgets.totals:
        limit, actual = budgets.totals[flavor], _measure(bundle, m)
        checks.append(Check(what="total", limit=limit, actual=actual, ok=actual <= limit, line=(
            f"{name}: {format_exact(actual)} ({m}) exceed the {flavor} budget of {format_exact(limit)} "
            f"(written {budgets.texts.get(f'{WHERE}.{flavor}', budgets.texts.get(f'{WHERE}.{flavor}.total', ''))!r}) "
            f"in {where}; act on the waste list or raise the budget")))
    accel = bundle.get("accelerator")
    if isinstance(flavor, str) and isinstance(accel, str) and accel in budgets.accelerators.get(flavor, {}):
        limit = budgets.accelerators[flavor][accel]
        models = sum(int(c["disk_bytes" if m == "disk" else "compressed_bytes"]) for c in bundle["components"]
                     if str(c["name"]).startswith("model:"))
        actual = _measure(bundle, m) - models
        checks.append(Check(what=f"total:{accel}", limit=limit, actual=actual, ok=actual <= limit, line=(
            f"{name}: {format_exact(actual)} ({m}, without models) exceed the {flavor} budget on {accel} "
            f"profiles of {format_exact(limit)} in {where}; act on the waste list or raise the budget")))
    for scope in ("*", flavor):
        for comp, limit in (budgets.components.get(scope or "", {}) or {}).items():
            actual = _measure(bundle, m, comp)
            checks.append(Check(what=f"component:{comp}", limit=limit, actual=actual, ok=actual <= limit, line=(
                f"{name}: component {comp} is {format_exact(actual)} ({m}), over its budget of "
                f"{format_exact(limit)} in {where}")))
    return checks


def asset_limit_check(bundle: Mapping[str, Any]) -> Check:
    actual = int(bundle["compressed_bytes"])
    return Check(what="asset-limit", limit=GITHUB_ASSET_LIMIT, actual=actual, ok=actual < GITHUB_ASSET_LIMIT,
                 line=(f"{bundle['name']}: compressed archive ~{format_size(actual)} is over GitHub's "
                       f"{format_size(GITHUB_ASSET_LIMIT)} per-asset limit, so `mlfreeze release` will split it "
                       "into parts (rejoined with cat before use)"))


# ---- baseline -------------------------------------------------------------------------

def load_baseline(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: baseline not found; pass the sizes JSON of a previous build") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: baseline is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != 1 or not isinstance(doc.get("bundles"), list):
        raise UsageError(f"{path}: not a sizes report (schema_version 1 with 'bundles'); "
                         "pass a JSON written by 'mlfreeze sizes --json'")
    for i, bundle in enumerate(doc["bundles"]):
        problem = _baseline_bundle_problem(bundle)
        if problem:
            raise UsageError(f"{path}: bundles[{i}] {problem}; pass a JSON written by 'mlfreeze sizes --json'")
    return doc


def _baseline_bundle_problem(bundle: Any) -> str | None:
    """What a baseline bundle lacks that a delta reads, or None."""
    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not isinstance(bundle, dict):
        return "is not an object"
    if not isinstance(bundle.get("name"), str) or not count(bundle.get("disk_bytes")):
        return "needs 'name' and an integer 'disk_bytes'"
    components = bundle.get("components")
    if not isinstance(components, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and count(c.get("disk_bytes"))
            and count(c.get("compressed_bytes")) for c in components):
        return "needs 'components', each with 'name', 'disk_bytes' and 'compressed_bytes'"
    return None


def match_baseline(bundle: Mapping[str, Any], baseline: Mapping[str, Any], only: bool) -> Mapping[str, Any] | None:
    """The baseline bundle for ``bundle``: same platform+flavor, else same name, else the only one."""
    olds: list[Mapping[str, Any]] = baseline["bundles"]
    key = (bundle.get("platform"), bundle.get("flavor"))
    if all(key):
        for old in olds:
            if (old.get("platform"), old.get("flavor")) == key:
                return old
    for old in olds:
        if old.get("name") == bundle.get("name"):
            return old
    return olds[0] if only and len(olds) == 1 else None


def delta(bundle: Mapping[str, Any], old: Mapping[str, Any], budgets: Budgets,
          baseline_path: Path) -> tuple[dict[str, Any], Check | None]:
    cur = {c["name"]: c for c in bundle["components"]}
    prev = {c["name"]: c for c in old["components"]}
    rows = []
    for name in sorted(set(cur) | set(prev)):
        a, b = prev.get(name, {}), cur.get(name, {})
        rows.append({"name": name, "baseline_bytes": int(a.get("disk_bytes", 0)),
                     "current_bytes": int(b.get("disk_bytes", 0)),
                     "delta_bytes": int(b.get("disk_bytes", 0)) - int(a.get("disk_bytes", 0)),
                     "delta_compressed_bytes": int(b.get("compressed_bytes", 0)) - int(a.get("compressed_bytes", 0))})
    rows.sort(key=lambda r: (-abs(r["delta_bytes"]), r["name"]))
    base_total, total = int(old["disk_bytes"]), int(bundle["disk_bytes"])
    base_measured, measured = _measure(old, budgets.measure), _measure(bundle, budgets.measure)
    doc = {"baseline": str(baseline_path), "baseline_name": old.get("name"), "baseline_bytes": base_total,
           "delta_bytes": total - base_total,
           "delta_percent": round(100 * (total - base_total) / base_total, 3) if base_total else None,
           "components": rows}
    check = None
    if budgets.max_growth is not None:
        allowed = budgets.max_growth.allowed(base_measured)
        grown = measured - base_measured
        check = Check(what="growth", limit=allowed, actual=grown, ok=grown <= allowed, line=(
            f"{bundle['name']}: grew {format_exact(grown)} ({budgets.measure}) over {baseline_path}, more than "
            f"max_growth = {budgets.max_growth.text!r} ({format_exact(allowed)}); see the per-component deltas"))
    return doc, check


def budget_error_lines(checks: list[Check]) -> list[str]:
    return [c.line for c in checks if not c.ok and c.what != "asset-limit"]

