"""``mlfreeze audit BUNDLE_DIR...``: is this bundle shippable?

Four checks, each finding one line that names the file or library:

* **record** (integrity): every file re-hashed against ``RECORD`` (differ / missing / extra; an
  extra file is named as written inside the bundle at run time, pointing at ``data_dir()``),
  RECORD is the one BUILD-INFO.json names, BUILD-INFO.json itself is valid;
* **pins** (integrity): every model file matches its sha256 pin in ``models/models.json``,
  every model file has a pin, and BUILD-INFO's model hashes agree with those pins;
* **closure** (integrity): the shared-library closure (``mlfreeze.bundle.closure.closure_findings``);
* **glibc** (integrity): a Linux bundle's glibc floor (the newest ``GLIBC_`` symbol version any ELF
  file needs, mlfreeze.bundle.glibc) is at most its profile's ``glibc_floor`` (or what
  ``MLFREEZE_GLIBC_FLOOR`` raises it to for a local build), naming the file that sets it, and is
  the floor BUILD-INFO records. Like a missing library, a floor above it means the bundle does
  not start on machines the profile promises to run on, hence exit 3;
* **signatures** (integrity): signed binaries verify where this host can check them
  (mlfreeze.bundle.signing: ``osslsigncode verify`` for PE files, ``codesign --verify`` on macOS);
* **verification**: BUILD-INFO records the verification of exactly this bundle: present and
  passed, for this bundle's set, flavor and platform, and the shipped report
  (``verify-report.json``, inside RECORD) has the digest BUILD-INFO names. A flavor that ships
  no models records "does not apply" plus its ``--health`` check, accepted only when RECORD
  holds no ``models/`` file. A failed self-test is a verification finding too.

Exit 3 when any finding is about integrity, else 1 when any is about verification, else 0
with one ``OK`` line per bundle. ``mlfreeze release`` runs the same audit on every bundle.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlfreeze.errors import IntegrityError, MlfreezeError, UsageError, VerificationError
from mlfreeze_runtime import buildinfo as _buildinfo
from mlfreeze_runtime import record as _record
from mlfreeze_runtime.modelindex import read_models_index

INTEGRITY = "integrity"
VERIFICATION = "verification"
AREAS = {"record": INTEGRITY, "build-info": INTEGRITY, "pins": INTEGRITY, "closure": INTEGRITY,
         "glibc": INTEGRITY, "signature": INTEGRITY, "verification": VERIFICATION, "selftest": VERIFICATION}
REPORT_IN_BUNDLE = "verify-report.json"
# Why a file is there that RECORD does not list, almost always: the app wrote it beside its executable.
WRITTEN_AT_RUN_TIME = ("; a file written inside the bundle after it was built (by the app at run time?): apps "
                       "write to mlfreeze_runtime.app.data_dir() (docs/your-app.md \"Where an app writes\"); "
                       "move it out, or reinstall the bundle")
MODELS_INDEX = "models/models.json"


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One reason a bundle is not shippable. ``area`` is a key of AREAS; ``subject`` a file or library."""

    area: str
    subject: str
    detail: str

    @property
    def kind(self) -> str:
        return AREAS[self.area]

    def line(self, bundle: str) -> str:
        return f"{bundle}: {self.area}: {self.subject}: {self.detail}"


@dataclass(kw_only=True)
class AuditResult:
    """The audit of one bundle: findings, notices, and what was read from its files."""

    bundle: Path
    info: dict[str, Any] | None = None
    findings: list[Finding] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)  # bundle relpath -> sha256 hex, re-read from the file
    record_sha256: str | None = None
    models_index: dict[str, Any] | None = None

    def add(self, area: str, subject: str, detail: str) -> None:
        self.findings.append(Finding(area=area, subject=subject, detail=detail))

    @property
    def exit_code(self) -> int:
        kinds = {f.kind for f in self.findings}
        return 3 if INTEGRITY in kinds else 1 if VERIFICATION in kinds else 0

    def lines(self) -> list[str]:
        return [f.line(self.bundle.name) for f in self.findings]


def exit_code(results: Sequence[AuditResult]) -> int:
    """3 if any integrity finding, else 1 if any verification finding, else 0."""
    codes = {r.exit_code for r in results}
    return 3 if 3 in codes else 1 if 1 in codes else 0


def _check_record(result: AuditResult) -> dict[str, _record.Entry] | None:
    bundle = result.bundle
    try:
        entries = _record.read(bundle)
    except _record.RecordError as exc:
        result.add("record", _record.RECORD_NAME, str(exc).removeprefix(f"{bundle / _record.RECORD_NAME}: "))
        return None
    for f in _record.verify(bundle, full=True, record=entries, hashes=result.hashes):
        result.add("record", f.path, f"{f.kind}: {f.detail}{WRITTEN_AT_RUN_TIME if f.kind == 'extra' else ''}")
    result.record_sha256 = _record.digest_of(bundle)
    info = result.info
    if info is not None and info["record"]["sha256"] != result.record_sha256:
        result.add("record", _record.RECORD_NAME, f"sha256 {result.record_sha256[:16]}... is not the "
                   f"{info['record']['sha256'][:16]}... BUILD-INFO.json names")
    return entries


def _models_document(models_dir: Path) -> dict[str, Any]:
    """models.json as the runtime's one reader validated it; ValueError when it is unreadable."""
    return dict(read_models_index(models_dir, check_files=False).document)


def _check_pins(result: AuditResult, entries: Mapping[str, _record.Entry]) -> None:
    model_files = [p for p in entries if p.startswith("models/")]
    if not model_files:
        return
    try:
        doc = _models_document(result.bundle / "models")
    except (OSError, ValueError, TypeError) as exc:  # each reader's errors are ValueErrors
        result.add("pins", MODELS_INDEX, f"unreadable ({exc})")
        return
    result.models_index = doc
    pinned: dict[str, str] = {}
    for m in doc.get("models", []):
        pins = m.get("sha256") or {}
        for name, rel in (m.get("files") or {}).items():
            if rel not in pins:
                result.add("pins", f"models/{rel}", f"model {m.get('id')}: file {name} has no sha256 pin in "
                                                    "models.json")
        for rel, want in pins.items():
            pinned[rel] = want
            got = result.hashes.get(f"models/{rel}")
            if f"models/{rel}" not in entries:
                result.add("pins", f"models/{rel}", f"model {m.get('id')}: pinned file not in the bundle")
            elif got is not None and got != want:
                result.add("pins", f"models/{rel}", f"model {m.get('id')}: sha256 {got[:16]}..., pinned "
                                                    f"{want[:16]}...")
    for model in (result.info or {}).get("models", []):
        for rel, digest in model["files"].items():
            if pinned.get(rel) != digest:
                result.add("pins", f"models/{rel}", f"BUILD-INFO.json says sha256 {digest[:16]}..., models.json "
                                                    f"pins {str(pinned.get(rel))[:16]}...")


def _check_verification(result: AuditResult, entries: Mapping[str, _record.Entry] | None) -> None:
    info = result.info
    assert info is not None
    v = info["verification"]
    model_files = [p for p in entries or () if p.startswith("models/")]
    if info["selftest"] is not None and not info["selftest"]["passed"]:
        result.add("selftest", "BUILD-INFO.json", f"the frozen self-test failed ({info['selftest']['failed']} "
                                                  "checks)")
    if v is None:
        result.add("verification", "BUILD-INFO.json", "verification is missing (null): the bundle was frozen "
                   "without its flavor's verify report; build it with `mlfreeze build`")
        return
    if not v["passed"] or v["failed"]:
        result.add("verification", "BUILD-INFO.json", f"verification failed ({v['failed']} of {v['checks']} "
                                                      "checks)")
    if not v["applies"]:
        if model_files or info["models"]:
            result.add("verification", "BUILD-INFO.json", f"records that verification does not apply, but the "
                       f"bundle holds {len(model_files)} model files (first: {(model_files or ['?'])[0]})")
        return
    for key, want in (("flavor", info["flavor"]), ("platform", info["platform"]), ("set", info["model_set"])):
        if v[key] != want:
            result.add("verification", "BUILD-INFO.json", f"verification is for {key} {v[key]!r}, the bundle "
                                                          f"is {key} {want!r}")
    index_set = (result.models_index or {}).get("set")
    if result.models_index is not None and v["set"] != index_set:
        result.add("verification", MODELS_INDEX, f"the bundle ships set {index_set!r}, verification is for "
                                                 f"{v['set']!r}")
    report = v["report"]
    if entries is None:
        return
    if report not in entries:
        result.add("verification", report, "the verify report BUILD-INFO.json names is not in the bundle's RECORD")
        return
    digest = result.hashes.get(report)
    if digest is not None and digest != v["report_sha256"]:
        result.add("verification", report, f"sha256 {digest[:16]}... is not the {v['report_sha256'][:16]}... "
                                           "BUILD-INFO.json names (another run's report)")
        return
    try:
        doc = json.loads((result.bundle / report).read_text(encoding="utf-8"))
        context = doc["context"]
        passed = doc["passed"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        result.add("verification", report, f"not a verify report ({exc})")
        return
    for key in ("set", "flavor", "platform"):
        if context.get(key) != v[key]:
            result.add("verification", report, f"the report verifies {key} {context.get(key)!r}, BUILD-INFO.json "
                                               f"says {v[key]!r}")
    if passed is not True:
        result.add("verification", report, "the report says the verification failed")


def _check_closure(result: AuditResult, platform: str | None) -> Any:
    """The closure findings; returns the scanned tree (closure.Tree) for the glibc check."""
    try:
        from mlfreeze.bundle.closure import closure_findings, scan  # pyelftools, macholib, pefile

        tree = scan(result.bundle)
        lines = closure_findings(result.bundle, platform, tree)
    except ModuleNotFoundError as exc:  # a bare checkout without mlfreeze's requirements
        raise UsageError(f"the shared-library closure check needs {exc.name} (one of mlfreeze's requirements: "
                         "pyelftools, macholib, pefile); install mlfreeze with pip (`pip install .` in a "
                         "checkout) and audit again") from None
    for line in lines:
        subject, _, detail = line.partition(": ")
        result.add("closure", subject, detail or "unresolved")
    return tree


def _check_glibc(result: AuditResult, platform: str | None, tree: Any) -> None:
    """The floor the files need against the profile's (or MLFREEZE_GLIBC_FLOOR's) and BUILD-INFO's."""
    from mlfreeze.bundle import glibc
    from mlfreeze.platforms.profiles import load_profile

    if platform is None:
        return
    profile = load_profile(platform)
    if profile.host_os != "linux" or profile.glibc_floor is None:
        return
    floor = glibc.floor_of(tree.binaries, tree.files)
    allowed = glibc.allowed_floor(profile.name, profile.glibc_floor)
    if allowed.raised:
        result.notices.append(f"{result.bundle.name}: glibc floor raised to {allowed.version} by {allowed.by} "
                              "(a local build: it does not run on older distributions)")
    problem = glibc.above(floor, allowed)
    if problem is not None:
        result.add("glibc", floor.glibc_file or "?", problem)
    recorded = (result.info or {}).get("glibc")
    if recorded is not None and recorded.get("floor") != floor.glibc:
        result.add("glibc", _buildinfo.FILE_NAME, f"records glibc floor {recorded.get('floor')}, the files need "
                                                  f"{floor.glibc} ({floor.glibc_file})")


def _check_signatures(result: AuditResult, tree: Any) -> None:
    """Signed binaries verify where this host can check them (mlfreeze.bundle.signing)."""
    from mlfreeze import hostinfo
    from mlfreeze.bundle import signing

    if result.info is None or (result.info.get("signing") is None
                               and not any(b.format == "pe" for b in tree.binaries.values())):
        return
    findings, notes = signing.verify_findings(result.bundle, result.info, hostinfo.current().os)
    for subject, detail in findings:
        result.add("signature", subject, detail)
    result.notices += notes


def audit_bundle(bundle: Path) -> AuditResult:
    """Audit one bundle folder (never raises for a bad bundle: everything wrong is a finding)."""
    result = AuditResult(bundle=bundle)
    try:
        result.info = _buildinfo.read(bundle)
    except _buildinfo.BuildInfoError as exc:
        result.add("build-info", _buildinfo.FILE_NAME, str(exc).removeprefix(f"{bundle / _buildinfo.FILE_NAME}: "))
    entries = _check_record(result)
    if entries is not None:
        _check_pins(result, entries)
    if result.info is not None:
        _check_verification(result, entries)
    platform = result.info["platform"] if result.info else None
    tree = _check_closure(result, platform)
    _check_glibc(result, platform, tree)
    _check_signatures(result, tree)
    return result


def unpinned_models(result: AuditResult) -> list[str]:
    """Models the bundle ships without pinned goldens and without an opt-out in BUILD-INFO (for release)."""
    opted = set((result.info or {}).get("unpinned_goldens", []))
    out = []
    for m in (result.models_index or {}).get("models", []):
        golden = m.get("golden")
        if not (golden and f"models/{golden}" in result.hashes) and m.get("id") not in opted:
            out.append(str(m.get("id")))
    return out


def unproven_onnx_models(result: AuditResult) -> list[str]:
    """CLIP models whose ONNX towers the bundle ships with no proof that catches a faulty export
    without torch (an agreement record naming exactly these towers, pinned goldens, or
    ``reference_sims`` in their verify table), and that the bundle's verification does not record
    as opted out (``[tool.mlfreeze] unproven_onnx``, in the shipped report's context): for release."""
    from mlfreeze_runtime.verify import agreement_record

    try:
        report = json.loads((result.bundle / REPORT_IN_BUNDLE).read_text(encoding="utf-8"))
        opted = set(report.get("context", {}).get("unproven_onnx", []))
    except (OSError, ValueError, AttributeError):
        opted = set()
    out = []
    for m in (result.models_index or {}).get("models", []):
        roles, files, pins = m.get("roles", {}), m.get("files", {}), m.get("sha256", {})
        towers = {r.split("_")[0]: pins.get(files.get(n, ""), "") for n, r in roles.items()
                  if r in ("image_onnx", "text_onnx")}
        if m.get("kind") != "clip" or len(towers) != 2 or m.get("id") in opted:
            continue
        golden = m.get("golden")
        proven = bool(golden and f"models/{golden}" in result.hashes) or bool(m.get("verify", {}).get("reference_sims"))
        for name in (n for n, r in roles.items() if r == agreement_record.ROLE and n in files):
            try:
                doc = agreement_record.read(result.bundle / "models" / files[name])
            except agreement_record.RecordError:
                continue
            proven = proven or agreement_record.backs_towers(doc, towers)
        if not proven:
            out.append(str(m.get("id")))
    return out


def refusal(results: Sequence[AuditResult]) -> MlfreezeError | None:
    """The error for the worst of ``results`` (IntegrityError exit 3, VerificationError exit 1), or None."""
    bad = [r for r in results if r.findings]
    if not bad:
        return None
    code = exit_code(results)
    lines = [line for r in bad for line in r.lines()]
    message = (f"{len(lines)} finding(s) in {len(bad)} bundle(s), first: {lines[0]}; the bundle is not "
               "shippable: rebuild it (mlfreeze build) and audit again")
    return IntegrityError(message) if code == 3 else VerificationError(message)


def audit(bundles: Sequence[Path], *, log: Callable[[str], None] = print) -> list[AuditResult]:
    """Audit every bundle, print findings and notices (or OK); raise the refusal when any is not shippable."""
    results = []
    for bundle in bundles:
        if not bundle.is_dir():
            raise UsageError(f"{bundle}: not a folder; pass bundle folders (dist/<app>-<version>-<platform>-<flavor>/)")
        if not any((bundle / n).exists() for n in ("RECORD", "BUILD-INFO.json", "_internal")):
            inside = sorted(p.name for p in bundle.iterdir() if (p / "BUILD-INFO.json").is_file())
            hint = f"the bundles in it: {', '.join(inside)}" if inside else "dist/<app>-<version>-<platform>-<flavor>/"
            raise UsageError(f"{bundle}: not a bundle (no RECORD, BUILD-INFO.json or _internal/); pass {hint}")
        result = audit_bundle(bundle)
        results.append(result)
        for line in result.notices:
            log(f"audit: note: {line}")
        for line in result.lines():
            log(f"audit: {line}")
        if not result.findings:
            info = result.info or {}
            log(f"audit: OK {bundle.name}: {len(result.hashes)} files match RECORD, verification "
                f"{'applies and passed' if (info.get('verification') or {}).get('applies') else 'does not apply'}")
    error = refusal(results)
    if error is not None:
        raise error
    return results


def main(args: argparse.Namespace) -> int:
    audit([Path(b) for b in args.bundles], log=lambda line: print(line, flush=True))
    return 0
