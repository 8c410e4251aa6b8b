"""Code signing of a frozen bundle, and the audit's check of its signatures.

Order (custody): the freeze signs the bundle after pruning and adding its models and before its
self-test, so the self-test runs the signed binaries; RECORD and BUILD-INFO are written after that
(mlfreeze.bundle.freeze.seal_bundle), so they pin the signed bytes, and ``mlfreeze audit`` then
checks both the bytes and the signatures. Signing a bundle after it was sealed would change bytes
RECORD pins (the audit refuses that bundle, exit 3).

* **Windows (Authenticode).** Every PE file of the bundle (``.exe``, ``.dll``, ``.pyd``) that carries
  no signature yet is signed (files a vendor signed, such as NVIDIA's or Microsoft's DLLs, keep
  theirs): ``signtool sign`` on a Windows host, ``osslsigncode sign`` elsewhere, SHA-256, with an
  RFC 3161 timestamp when ``timestamp_url`` is set. BUILD-INFO records the signing certificate's
  SHA-256 and the files signed.
* **macOS.** Every Mach-O file, deepest first and libraries before executables (a signature seals
  what it loads), is signed with ``codesign --force --timestamp --options runtime`` (the hardened
  runtime notarization requires), executables with the project's entitlements; then the bundle is
  zipped with ``ditto``, submitted with ``xcrun notarytool submit --wait``, and each ``.app`` inside
  is stapled (``xcrun stapler staple``; a plain onedir folder cannot hold a ticket, so Gatekeeper
  checks its notarization online at first launch).

Secrets reach the commands only at run time, from the environment variables the signing table
names: the commands echoed (and :func:`windows_plan` / :func:`macos_plan`, which are pure) show
``$NAME`` in their place. The audit's check (:func:`verify_findings`): each signed PE file verifies
with ``osslsigncode verify`` (or ``signtool verify /pa`` on Windows), and each file BUILD-INFO lists
is signed by the certificate BUILD-INFO records; on macOS each signed Mach-O passes ``codesign
--verify --deep --strict``. A damaged signature, or code changed under an intact one, is a finding.
A signature that is intact but chains to a certificate this host does not trust (self-signed, a
private CA not given in ``MLFREEZE_SIGNING_CA``) is a note: trust is the users' machines' decision,
custody is the certificate pin. Where the host has no tool to check, the audit says so in a note.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlfreeze import _proc as proc
from mlfreeze import hostinfo
from mlfreeze.errors import ConfigError, FreezeError
from mlfreeze.project.signing import MacSigning, Signing, WindowsSigning

PE_SUFFIXES = (".exe", ".dll", ".pyd")
CA_ENV = "MLFREEZE_SIGNING_CA"  # a PEM file of extra trust anchors for the audit (a private CA)
MACHO_MAGICS = (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce",
                b"\xca\xfe\xba\xbe", b"\xbe\xba\xfe\xca")


@dataclass(frozen=True, kw_only=True)
class Step:
    """One command of a signing plan. ``argv`` may hold ``$NAME`` placeholders, replaced by the
    environment variable's value only when the command runs (never echoed); ``output``: a file the
    command writes that then replaces ``target`` (osslsigncode writes a copy)."""

    argv: tuple[str, ...]
    what: str
    target: str = ""
    output: str = ""


# ---------------------------------------------------------------------------- Windows


def pe_signed(path: Path) -> bool:
    """Whether the PE file carries an Authenticode signature (a non-empty security directory)."""
    import pefile

    try:
        pe = pefile.PE(str(path), fast_load=True)
    except pefile.PEFormatError:
        return False
    try:
        entry = pe.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]]
        return bool(entry.VirtualAddress and entry.Size)
    finally:
        pe.close()


def pe_files(bundle: Path) -> list[Path]:
    """Every PE file of the bundle (by suffix and the ``MZ`` magic), in path order."""
    out = []
    for path in sorted(bundle.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.suffix.lower() in PE_SUFFIXES:
            with path.open("rb") as f:
                if f.read(2) == b"MZ":
                    out.append(path)
    return out


def windows_tool(cfg: WindowsSigning, running_on: str) -> str:
    """``signtool`` when running on Windows, ``osslsigncode`` elsewhere, unless the table names one."""
    if cfg.tool != "auto":
        return cfg.tool
    return "signtool" if running_on == "windows" else "osslsigncode"


def windows_plan(files: Sequence[str], cfg: WindowsSigning, tool: str) -> list[Step]:
    """The commands that sign ``files`` (bundle-relative paths of unsigned PE files), in order."""
    cert, password = f"${cfg.certificate_env}", f"${cfg.password_env}"
    steps = []
    if tool == "signtool":
        base = ["signtool", "sign", "/fd", "sha256", "/f", cert, "/p", password]
        base += ["/tr", cfg.timestamp_url, "/td", "sha256"] if cfg.timestamp_url else []
        base += ["/d", cfg.description] if cfg.description else []
        base += ["/du", cfg.url] if cfg.url else []
        for i in range(0, len(files), 50):  # signtool signs many files per call
            batch = files[i:i + 50]
            steps.append(Step(argv=(*base, *batch), what=f"Authenticode-sign {len(batch)} file(s)"))
        return steps
    for rel in files:
        argv = ["osslsigncode", "sign", "-pkcs12", cert, "-readpass", "$PASSWORD_FILE", "-h", "sha256"]
        argv += ["-ts", cfg.timestamp_url] if cfg.timestamp_url else []
        argv += ["-n", cfg.description] if cfg.description else []
        argv += ["-i", cfg.url] if cfg.url else []
        argv += ["-in", rel, "-out", rel + ".signed"]
        steps.append(Step(argv=tuple(argv), what=f"Authenticode-sign {rel}", target=rel, output=rel + ".signed"))
    return steps


def certificate_sha256(pkcs12: Path, password: str) -> str:
    """SHA-256 (hex) of the DER signing certificate inside a PKCS#12 file (pyca/cryptography)."""
    try:
        from cryptography.hazmat.primitives.serialization import Encoding
        from cryptography.hazmat.primitives.serialization import pkcs12 as p12
    except ImportError:
        raise ConfigError("Authenticode signing reads the certificate with pyca/cryptography: "
                          "pip install 'mlfreeze[update]'") from None

    try:
        _key, cert, _chain = p12.load_key_and_certificates(pkcs12.read_bytes(), password.encode() or None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{pkcs12}: not a readable PKCS#12 file with this password ({exc})") from None
    if cert is None:
        raise ConfigError(f"{pkcs12}: holds no certificate")
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


# ---------------------------------------------------------------------------- macOS


def is_macho(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) in MACHO_MAGICS
    except OSError:
        return False


def macho_order(files: Sequence[tuple[str, bool]]) -> list[str]:
    """Mach-O files (``(relpath, is executable)``) in signing order: deepest paths first, and at
    each depth libraries before executables, so nothing is signed before what it contains or loads."""
    return [rel for rel, _ in sorted(files, key=lambda f: (-f[0].count("/"), f[1], f[0]))]


def macos_plan(bundle_name: str, files: Sequence[tuple[str, bool]], apps: Sequence[str], cfg: MacSigning) -> list[Step]:
    """codesign each Mach-O (:func:`macho_order`), then (``notarize``) zip, submit and staple.
    ``files``: (bundle-relative path, is an executable); ``apps``: the ``.app`` folders inside."""
    steps = []
    for rel in macho_order(files):
        executable = dict(files)[rel]
        argv = ["codesign", "--force", "--timestamp", "--options", "runtime", "--sign", cfg.identity]
        argv += ["--keychain", cfg.keychain] if cfg.keychain else []
        argv += ["--entitlements", str(cfg.entitlements)] if executable and cfg.entitlements else []
        steps.append(Step(argv=(*argv, rel), what=f"codesign {rel}", target=rel))
    for app in sorted(apps, key=lambda a: -a.count("/")):
        argv = ["codesign", "--force", "--timestamp", "--options", "runtime", "--sign", cfg.identity]
        argv += ["--keychain", cfg.keychain] if cfg.keychain else []
        argv += ["--entitlements", str(cfg.entitlements)] if cfg.entitlements else []
        steps.append(Step(argv=(*argv, app), what=f"codesign {app}", target=app))
    if cfg.notarize:
        archive = f"../{bundle_name}.notarize.zip"
        steps.append(Step(argv=("ditto", "-c", "-k", "--keepParent", ".", archive),
                          what="zip the signed bundle for notarization"))
        steps.append(Step(argv=("xcrun", "notarytool", "submit", archive, "--apple-id", f"${cfg.apple_id_env}",
                                "--team-id", f"${cfg.team_id_env}", "--password", f"${cfg.password_env}",
                                "--wait"), what="notarize (notarytool submit --wait)"))
        for app in apps:
            steps.append(Step(argv=("xcrun", "stapler", "staple", app), what=f"staple the ticket to {app}",
                              target=app))
    return steps


def macos_inputs(bundle: Path) -> tuple[list[tuple[str, bool]], list[str]]:
    """(Mach-O files with whether each is executable, ``.app`` folders) of the bundle."""
    files = [(p.relative_to(bundle).as_posix(), os.access(p, os.X_OK) and p.suffix not in (".so", ".dylib"))
             for p in sorted(bundle.rglob("*")) if p.is_file() and not p.is_symlink() and is_macho(p)]
    apps = [p.relative_to(bundle).as_posix() for p in sorted(bundle.rglob("*.app")) if p.is_dir()]
    return files, apps


# ---------------------------------------------------------------------------- running


def _expand(argv: Sequence[str], values: Mapping[str, str]) -> list[str]:
    return [values[a[1:]] if a.startswith("$") and a[1:] in values else a for a in argv]


def _run(steps: Sequence[Step], bundle: Path, values: Mapping[str, str], log: Callable[[str], None]) -> None:
    for step in steps:
        log(f"sign: {step.what}")
        done = proc.capture(_expand(step.argv, values), cwd=bundle, echo=False)
        if done.returncode != 0:
            tail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise FreezeError(f"signing failed: {' '.join(step.argv[:2])} {step.target or ''}: exit "
                              f"{done.returncode}: {tail[:300]}; nothing was sealed")
        if step.output:
            out, target = bundle / step.output, bundle / step.target
            shutil.copymode(target, out)
            os.replace(out, target)


def _secrets(names: Sequence[str], env: Mapping[str, str]) -> dict[str, str] | None:
    values = {n: env.get(n, "") for n in names}
    return values if all(values.values()) else None


def sign_bundle(bundle: Path, *, host_os: str, signing: Signing, env: Mapping[str, str] | None = None,
                log: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Sign ``bundle`` for ``host_os`` as ``signing`` says; BUILD-INFO's ``signing`` object, or None
    when the bundle stays unsigned (no table for this OS, or its secrets are not set: said in one
    line). FreezeError (exit 4) when a signing command fails; ConfigError (exit 2) for an
    unreadable certificate."""
    env = os.environ if env is None else env
    cfg = signing.for_os(host_os)
    if cfg is None:
        return None
    if isinstance(cfg, WindowsSigning):
        values = _secrets((cfg.certificate_env, cfg.password_env), env)
        if values is None:
            log(f"sign: {bundle.name}: [tool.mlfreeze.signing.windows] is set but ${cfg.certificate_env} / "
                f"${cfg.password_env} are not: the bundle is NOT signed (a local build)")
            return None
        fingerprint = certificate_sha256(Path(values[cfg.certificate_env]), values[cfg.password_env])
        files = [p.relative_to(bundle).as_posix() for p in pe_files(bundle) if not pe_signed(p)]
        tool = windows_tool(cfg, hostinfo.current().os)
        if shutil.which(tool) is None:
            raise FreezeError(f"signing needs {tool}, which is not on PATH "
                              f"({'the Windows SDK' if tool == 'signtool' else 'apt-get install osslsigncode'})")
        with tempfile.TemporaryDirectory(prefix="mlfreeze-sign-") as tmp:
            secret = Path(tmp) / "password"
            secret.touch(mode=0o600)
            secret.write_text(values[cfg.password_env], encoding="utf-8")
            values["PASSWORD_FILE"] = str(secret)
            _run(windows_plan(files, cfg, tool), bundle, values, log)
        log(f"sign: {bundle.name}: {len(files)} PE file(s) Authenticode-signed with {tool} (certificate sha256 "
            f"{fingerprint[:16]}...)")
        return {"kind": "authenticode", "tool": tool, "certificate_sha256": fingerprint, "files": files,
                "notarized": False}
    names = (cfg.apple_id_env, cfg.team_id_env, cfg.password_env) if cfg.notarize else ()
    values = _secrets(names, env) if names else {}
    if values is None:
        log(f"sign: {bundle.name}: [tool.mlfreeze.signing.macos] notarizes but ${cfg.apple_id_env} / "
            f"${cfg.team_id_env} / ${cfg.password_env} are not all set: the bundle is NOT signed (a local build)")
        return None
    machos, apps = macos_inputs(bundle)
    if shutil.which("codesign") is None:
        raise FreezeError("signing needs codesign (Xcode command line tools), which is not on PATH")
    _run(macos_plan(bundle.name, machos, apps, cfg), bundle, values, log)
    if cfg.notarize:
        (bundle.parent / f"{bundle.name}.notarize.zip").unlink(missing_ok=True)
    log(f"sign: {bundle.name}: {len(machos)} Mach-O file(s) signed as {cfg.identity!r}"
        + (", notarized" if cfg.notarize else ""))
    return {"kind": "codesign", "tool": "codesign", "identity": cfg.identity,
            "files": [rel for rel, _ in machos], "notarized": cfg.notarize}


# ---------------------------------------------------------------------------- the audit


def verify_command(path: Path, host_os: str, ca_file: str | None) -> list[str] | None:
    """The command that verifies one signed file on this host, or None when the host cannot."""
    if path.suffix.lower() in PE_SUFFIXES:
        if host_os == "windows" and shutil.which("signtool"):
            return ["signtool", "verify", "/pa", str(path)]
        if shutil.which("osslsigncode"):
            return ["osslsigncode", "verify", "-in", str(path), *(["-CAfile", ca_file] if ca_file else [])]
        return None
    if host_os == "macos" and shutil.which("codesign"):
        return ["codesign", "--verify", "--deep", "--strict", "--verbose=2", str(path)]
    return None


def signature_certificates(path: Path) -> list[Any]:
    """The certificates inside a PE file's Authenticode signature (its PKCS#7 SignedData; the leaf
    first), [] when it has none or they cannot be read (pyca/cryptography)."""
    import pefile
    from cryptography.hazmat.primitives.serialization import pkcs7

    try:
        pe = pefile.PE(str(path), fast_load=True)
    except pefile.PEFormatError:
        return []
    try:
        entry = pe.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]]
        if not entry.VirtualAddress or not entry.Size:
            return []
        blob = bytes(pe.__data__[entry.VirtualAddress + 8:entry.VirtualAddress + entry.Size])  # after WIN_CERTIFICATE
    finally:
        pe.close()
    try:
        certs = list(pkcs7.load_der_pkcs7_certificates(blob[:_der_length(blob)]))
    except ValueError:
        return []
    leaves = [c for c in certs if not _issues_any(c, certs)]
    return leaves + [c for c in certs if c not in leaves]


def signer_sha256(path: Path) -> str | None:
    """SHA-256 (hex) of the certificate that signed a PE file's Authenticode signature (the leaf of
    its PKCS#7 SignedData), None when it has none or it cannot be read."""
    from cryptography.hazmat.primitives.serialization import Encoding

    certs = signature_certificates(path)
    return hashlib.sha256(certs[0].public_bytes(Encoding.DER)).hexdigest() if certs else None


def _intact_but_untrusted(path: Path) -> bool:
    """Whether a PE signature that failed verification verifies when its own certificates are the trust
    anchors: the code and the signature are intact, only the chain is not trusted by this host."""
    if not _has_cryptography() or shutil.which("osslsigncode") is None:
        return False
    from cryptography.hazmat.primitives.serialization import Encoding

    certs = signature_certificates(path)
    if not certs:
        return False
    with tempfile.TemporaryDirectory(prefix="mlfreeze-audit-") as tmp:
        anchors = Path(tmp) / "signature-certificates.pem"
        anchors.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
        return proc.capture(["osslsigncode", "verify", "-in", str(path), "-CAfile", str(anchors)]).returncode == 0


def _der_length(blob: bytes) -> int:
    """The length of the DER element at the start of ``blob`` (the PKCS#7 without its 8-byte padding)."""
    if len(blob) < 2:
        return len(blob)
    first = blob[1]
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    return 2 + n + int.from_bytes(blob[2:2 + n], "big")


def _issues_any(cert: Any, certs: Sequence[Any]) -> bool:
    return any(other is not cert and other.issuer == cert.subject and other.subject != cert.subject for other in certs)


def _has_cryptography() -> bool:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True


def verify_findings(bundle: Path, info: Mapping[str, Any] | None, host_os: str,
                    env: Mapping[str, str] | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """(findings as (file, detail), notes) for the signatures of ``bundle``: every file BUILD-INFO
    records as signed, and every other PE file that carries a signature, must verify where this
    host can check it and (Authenticode) be signed by the certificate BUILD-INFO records."""
    env = os.environ if env is None else env
    record = (info or {}).get("signing")
    ca_file = env.get(CA_ENV) or None
    targets: dict[str, bool] = {}  # relpath -> recorded as signed by this build
    for rel in (record or {}).get("files", []):
        targets[rel] = True
    for path in pe_files(bundle):
        rel = path.relative_to(bundle).as_posix()
        if rel not in targets and pe_signed(path):
            targets[rel] = False
    findings: list[tuple[str, str]] = []
    notes: list[str] = []
    untrusted: list[str] = []
    unchecked = 0
    for rel, ours in sorted(targets.items()):
        path = bundle / rel
        if not path.is_file():
            findings.append((rel, "BUILD-INFO.json records it as signed, but it is not in the bundle"))
            continue
        if ours and path.suffix.lower() in PE_SUFFIXES:
            if not pe_signed(path):
                findings.append((rel, "BUILD-INFO.json records it as signed, but it carries no signature"))
                continue
            want = record.get("certificate_sha256") if record else None
            got = signer_sha256(path) if want and _has_cryptography() else want
            if want and got != want:
                findings.append((rel, f"signed by certificate sha256 {str(got)[:16]}..., BUILD-INFO.json records "
                                      f"{want[:16]}..."))
                continue
        cmd = verify_command(path, host_os, ca_file)
        if cmd is None:
            unchecked += 1
            continue
        done = proc.capture(cmd)
        if done.returncode != 0 and cmd[0] == "osslsigncode" and _intact_but_untrusted(path):
            untrusted.append(rel)  # code and signature intact; whose certificate it is, the pin above decides
        elif done.returncode != 0:
            lines = [ln.strip() for ln in (done.stdout + "\n" + done.stderr).splitlines() if ln.strip()]
            why = next((ln for ln in lines if "mismatch" in ln.lower() or "failed" in ln.lower()
                        or "error" in ln.lower()), lines[-1] if lines else "no output")
            findings.append((rel, f"signature does not verify ({cmd[0]} exit {done.returncode}: {why[:200]})"))
    if untrusted:
        notes.append(f"{bundle.name}: {len(untrusted)} signed file(s) are intact but signed by a certificate this "
                     f"host does not trust (first: {untrusted[0]}; a self-signed or private CA: trust it with "
                     f"{CA_ENV}=<PEM file>; users' machines decide with their own trust store)")
    if record and record.get("kind") == "authenticode" and not _has_cryptography():
        notes.append(f"{bundle.name}: the signer of each PE file was not compared with BUILD-INFO's certificate: "
                     "pyca/cryptography is not installed (pip install 'mlfreeze[update]')")
    if unchecked:
        notes.append(f"{bundle.name}: {unchecked} signed file(s) not verified: this host has no tool to check "
                     "them (osslsigncode for PE files; codesign on macOS)")
    return findings, notes
