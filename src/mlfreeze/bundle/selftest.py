"""Self-test a frozen bundle the way a user would run it.

Runs ``<app>-selftest --json`` (full and slim bundles: the gate, then the app's probe, over HTTP
for a server) and the app's real entry, from the bundle with a clean environment (no PYTHONPATH,
no PYTHONHOME, no virtualenv or conda variables, no MLFREEZE_MODELS_DIR, so the bundle's runtime
hook must find its own models/), ``$MLFREEZE_DATA_DIR`` at a temporary folder and a working
directory outside the bundle and the source tree. The entry check follows the bundle's
``app-contract.json`` (:mod:`mlfreeze_runtime.contract`):

* a ``serve`` contract: in a flavor without ``<app>-selftest`` (lite) the server is started,
  must answer its readiness URL and stop on SIGTERM (:mod:`mlfreeze_runtime.serve`; the probes
  need models, which lite lacks); full and slim start it inside ``<app>-selftest``;
* a ``smoke`` command: ``<app> ARGS...`` must exit with the declared code (every flavor);
* neither: ``<app> --health`` must print JSON with ``ml_available`` true exactly for the flavors
  that ship models.

Every flavor then fails when the runs left a file inside the bundle (new, changed or deleted:
RECORD would not describe it), naming the files and the data directory the app should use.
Any failure renames the bundle to ``<name>.FAILED`` so it cannot be mistaken for a good build,
and raises VerificationError.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlfreeze import _proc as proc
from mlfreeze.errors import VerificationError
from mlfreeze_runtime import record as _record
from mlfreeze_runtime import serve as _serve
from mlfreeze_runtime.app import DATA_ENV
from mlfreeze_runtime.contract import AppContract, ContractError, Smoke, read_contract

FAILED_SUFFIX = ".FAILED"
# Variables a clean run keeps: where programs and the user's home are, the locale, the temp dir.
_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT", "USERPROFILE")
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True, kw_only=True)
class SelftestResult:
    passed: bool
    checks: int
    failed: int
    failures: tuple[str, ...] = ()
    entry_check: str = "health"  # how the app's own entry was run: health, serve or smoke

    def summary(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": self.checks, "failed": self.failed}


def clean_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a frozen bundle gets: a few neutral variables, nothing Python-specific."""
    environ = os.environ if environ is None else environ
    env = {k: environ[k] for k in _KEEP if k in environ}
    # PATH without any virtualenv's bin/ directory
    parts = [p for p in env.get("PATH", _SYSTEM_PATH).split(os.pathsep)
             if p and not (Path(p).parent / "pyvenv.cfg").exists()]
    env["PATH"] = os.pathsep.join(parts) or _SYSTEM_PATH
    return env


def parse_json_output(stdout: str) -> dict[str, Any] | None:
    """The JSON object a command printed: the whole output, else its last line that is one."""
    text = stdout.strip()
    for candidate in [text, *reversed(text.splitlines())]:
        candidate = candidate.strip()
        if candidate.startswith("{"):
            try:
                value = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def failures_of(report: Mapping[str, Any]) -> list[str]:
    """The failing checks of a ``<app>-selftest --json`` report (verify.report.document), one line
    each, worded as the verify stage words them: '<model>: <check>: FAIL: expected ..., got ...'."""
    from mlfreeze_runtime.verify.result import FAIL, CheckResult

    results = report.get("results")
    out = []
    for item in results if isinstance(results, list) else []:
        if isinstance(item, dict) and item.get("status") == FAIL:
            try:
                out.append(CheckResult(**item).line())
            except TypeError:  # not a CheckResult: still name what failed
                out.append(f"{item.get('model', '?')}: {item.get('check', '?')}: FAIL")
    return out


def app_results(report: Mapping[str, Any]) -> str:
    """The app's own checks of a ``<app>-selftest --json`` report on one line
    (``app_serve pass, app_serve.probe1.text pass, ...``), ``""`` when it has none."""
    results = report.get("results")
    return ", ".join(f"{r.get('check')} {r.get('status')}" for r in results if isinstance(r, dict)
                     and str(r.get("check", "")).startswith("app_")) if isinstance(results, list) else ""


def _summary_count(report: Mapping[str, Any], key: str, fallback: int) -> int:
    summary = report.get("summary")
    value = summary.get(key) if isinstance(summary, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else fallback


def run_selftest(bundle: Path, *, app: str, flavor: str, exe_suffix: str = "",
                 timeout: float = 900.0, environ: Mapping[str, str] | None = None) -> SelftestResult:
    """Run the bundle's checks (module docstring); return the result (never raises for a failing bundle)."""
    env = clean_env(environ)
    failures: list[str] = []
    checks = failed = 0
    try:
        contract = read_contract(bundle)
    except ContractError as exc:
        contract = AppContract()
        failures.append(f"{exc}: rebuild the bundle")
        checks += 1
        failed += 1
    before = _record.snapshot(bundle)
    with tempfile.TemporaryDirectory(prefix="mlfreeze-selftest-") as tmp:
        cwd = Path(tmp) / "cwd"
        cwd.mkdir()
        env[DATA_ENV] = str(Path(tmp) / "data")
        if flavor in ("full", "slim"):  # the flavors that ship models and <app>-selftest
            exe = bundle / f"{app}-selftest{exe_suffix}"
            report, problem = _run_json([exe, "--json"], cwd=cwd, env=env, timeout=timeout)
            if report is None:
                failures.append(f"{exe.name} --json: {problem}")
            else:
                listed = failures_of(report)
                app_checks = app_results(report)
                if app_checks:
                    print(f"selftest: {exe.name}: {app_checks}", flush=True)
                passed = report.get("passed") is True and not listed and problem is None
                results = report.get("results")
                checks = _summary_count(report, "checks", len(results) if isinstance(results, list) else 0)
                failed = _summary_count(report, "failed", len(listed))
                if not passed:
                    failures += listed or [f"{exe.name}: {problem or 'reported passed=false'}"]
                    failed = max(failed, 1)
        exe = bundle / f"{app}{exe_suffix}"
        entry_checks: list[list[str]] = []
        if contract.serve is not None and flavor not in ("full", "slim"):
            entry_checks.append(serve_check(exe, contract, env=env, workdir=Path(tmp)))
        if contract.smoke is not None:
            entry_checks.append(smoke_check(exe, contract.smoke, cwd=cwd, env=env))
        if contract.empty:
            entry_checks.append(health_check(exe, flavor, cwd=cwd, env=env, timeout=timeout))
        for found in entry_checks:
            checks += 1
            failed += bool(found)
            failures += found
        written = _record.changes(before, _record.snapshot(bundle))
        checks += 1
        if written:
            more = f" (+{len(written) - 5} more)" if len(written) > 5 else ""
            failures.append(f"the app wrote inside the bundle during its run: {', '.join(written[:5])}{more}; an "
                            "app writes to mlfreeze_runtime.app.data_dir() (this run's data directory was "
                            f"{env[DATA_ENV]}), never beside its executable: the bundle's RECORD would not "
                            "match it and `mlfreeze audit` would refuse it")
            failed += 1
    entry = "serve" if contract.serve is not None else "smoke" if contract.smoke is not None else "health"
    return SelftestResult(passed=not failures, checks=checks, failed=failed, failures=tuple(failures),
                          entry_check=entry)


def health_check(exe: Path, flavor: str, *, cwd: Path, env: dict[str, str], timeout: float) -> list[str]:
    """``<app> --health`` prints JSON whose ``ml_available`` is true exactly for a flavor with models."""
    health, problem = _run_json([exe, "--health"], cwd=cwd, env=env, timeout=timeout)
    if health is None or problem is not None:
        return [f"{exe.name} --health: {problem or 'printed no JSON'}"]
    want = flavor in ("full", "slim")
    if health.get("ml_available") is not want:
        return [f"{exe.name} --health: ml_available is {health.get('ml_available')!r}, "
                f"expected {want} for a {flavor} bundle"]
    return []


def serve_check(exe: Path, contract: AppContract, *, env: dict[str, str], workdir: Path) -> list[str]:
    """Start the server of a bundle without models as its contract says, wait for its liveness path
    (``live``, else ``ready``), stop it (no probes: no models).
    One failure line per step that failed, naming it."""
    assert contract.serve is not None
    if not exe.is_file():
        return [f"{exe.name}: start: executable missing from the bundle"]
    run_dir = workdir / "serve"
    run_dir.mkdir(exist_ok=True)
    # a bundle without models is never verified-ready: it must answer its liveness path (``live``,
    # default ``ready``)
    serve = replace(contract.serve, ready=contract.serve.live or contract.serve.ready)
    outcome = _serve.run([str(exe)], serve, env=env, workdir=run_dir, spawn=proc.spawn)
    if outcome.passed:
        print(f"selftest: {exe.name}: server on 127.0.0.1:{outcome.port} ready in {outcome.ready_s or 0:.1f} s "
              f"(GET {serve.ready}), stopped on SIGTERM", flush=True)
    return [f"{exe.name} (serve): {f.step}: {f.detail}" for f in outcome.failures]


def smoke_check(exe: Path, smoke: Smoke, *, cwd: Path, env: dict[str, str]) -> list[str]:
    """``<app> ARGS...`` exits with the declared code within its timeout."""
    cmd: list[str | Path] = [exe, *smoke.args]
    shown = " ".join([exe.name, *smoke.args])
    if not exe.is_file():
        return [f"{shown} (smoke): executable missing from the bundle"]
    try:
        done = proc.capture(cmd, cwd=cwd, env={**env, **smoke.env}, timeout=smoke.timeout, echo=True)
    except proc.TimeoutExpired:
        return [f"{shown} (smoke): no exit within {smoke.timeout:g} s"]
    if done.returncode != smoke.exit_code:
        tail = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1]
        return [f"{shown} (smoke): exit {done.returncode}, expected {smoke.exit_code}: {tail[:300]}"]
    return []


def _run_json(cmd: list[Path | str], *, cwd: Path, env: dict[str, str],
              timeout: float) -> tuple[dict[str, Any] | None, str | None]:
    if not Path(cmd[0]).is_file():
        return None, "executable missing from the bundle"
    try:
        done = proc.capture(cmd, cwd=cwd, env=env, timeout=timeout, echo=True)
    except proc.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    report = parse_json_output(done.stdout)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1]
        return report, f"exit {done.returncode}: {tail[:300]}"
    if report is None:
        return None, "printed no JSON object"
    return report, None


def fail_bundle(bundle: Path, result: SelftestResult, *, keep: bool = True) -> VerificationError:
    """Move a bundle out of the way (``<name>.FAILED``, or delete it) and describe why."""
    where = "removed"
    if keep:
        failed = bundle.with_name(bundle.name + FAILED_SUFFIX)
        if failed.exists():
            shutil.rmtree(failed)
        bundle.rename(failed)
        where = f"moved to {failed}"
    else:
        shutil.rmtree(bundle, ignore_errors=True)
    first = result.failures[0] if result.failures else "unknown failure"
    more = f" (+{len(result.failures) - 1} more)" if len(result.failures) > 1 else ""
    return VerificationError(f"frozen self-test failed: {first}{more}; bundle {where}. "
                             "Fix the freeze (hooks, prune rules) and build again")


def check_bundle(bundle: Path, *, app: str, flavor: str, exe_suffix: str = "", keep_failed: bool = True,
                 timeout: float = 900.0) -> SelftestResult:
    """Run the self-test; on failure move the bundle aside and raise VerificationError (exit 1)."""
    result = run_selftest(bundle, app=app, flavor=flavor, exe_suffix=exe_suffix, timeout=timeout)
    for line in result.failures:
        print(f"selftest: FAIL {line}", flush=True)
    if not result.passed:
        raise fail_bundle(bundle, result, keep=keep_failed)
    print(f"selftest: {bundle.name}: passed ({result.checks} checks)", flush=True)
    return result
