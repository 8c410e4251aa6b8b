"""What a check produces, and what a model under test is (plain paths, no manifest needed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
STATUSES = (PASS, FAIL, WARN, SKIP)


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    """One line of the report: which check on which model, what was expected, what came out."""

    model: str
    check: str
    status: str
    expected: str = ""
    got: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        detail = f"expected {self.expected}, got {self.got}" if self.expected or self.got else ""
        return f"{self.model}: {self.check}: {self.status.upper()}" + (f": {detail}" if detail else "")


@dataclass(frozen=True, kw_only=True)
class ModelRef:
    """A model as the checks see it: local files, the declared facts and thresholds.

    ``files`` maps artifact (or archive member) names to local paths; ``verify`` is the raw
    ``[models.<id>.verify]`` table; ``golden`` is where the pinned reference outputs live
    (``src/mlfreeze/specs/goldens/<id>.json`` at build time, ``models/<id>/golden.json`` in a bundle).
    ``roles`` maps artifact names to their manifest role ("weights", "config") when known;
    ``derived_from`` is the pinned source of the model's ONNX towers (``"<id>@<weights sha256>"``,
    the manifest's or models.json's), "" when unknown.
    """

    id: str
    kind: str
    arch: str
    embed_dim: int
    files: Mapping[str, Path]
    verify: Mapping[str, Any]
    golden: Path | None = None
    roles: Mapping[str, str] = field(default_factory=dict)
    onnx_agreement: Mapping[str, Any] = field(default_factory=dict)  # raw [models.<id>.onnx_agreement]
    provides: tuple[str, ...] = ()  # the by-name loads it answers (mlfreeze_runtime.names)
    revision: str = ""  # pinned hub revision (hf-hub models)
    derived_from: str = ""


@dataclass(frozen=True, kw_only=True)
class Summary:
    passed: bool
    checks: int
    failed: int
    warnings: int
    skipped: int


def summarize(results: list[CheckResult], *, strict: bool = False) -> Summary:
    failed = sum(r.status == FAIL for r in results)
    warnings = sum(r.status == WARN for r in results)
    skipped = sum(r.status == SKIP for r in results)
    passed = failed == 0 and not (strict and warnings)
    return Summary(passed=passed, checks=len(results), failed=failed, warnings=warnings, skipped=skipped)
