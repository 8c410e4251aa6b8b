"""Authenticode signing with custody intact, on real PE files with the real osslsigncode.

setuptools ships small Windows launchers (``cli-64.exe``, ``cli-32.exe``); a Windows-profile bundle
(tests/release_bundles.py) gets two of them, is signed by :func:`mlfreeze.bundle.signing.sign_bundle`
with a self-signed code-signing certificate made here (pyca/cryptography), then sealed (RECORD and
BUILD-INFO after signing, as the freeze does). The audit verifies every signature with
``osslsigncode verify`` (the test's CA trusted through MLFREEZE_SIGNING_CA, as a private CA would
be) and checks each was made by the certificate BUILD-INFO records. A damaged signature, changed
code under an intact signature, or another signer fails the audit (exit 3) naming the file, even
with RECORD rewritten to match, and a vendor's signature on a file is kept, not replaced.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from release_bundles import fake_bundles_have_no_closure, make_bundle, seal  # noqa: F401  (autouse fixture)

from mlfreeze import cli
from mlfreeze.bundle import signing
from mlfreeze.project.signing import Signing, WindowsSigning

pytest.importorskip("cryptography")
pytestmark = pytest.mark.skipif(shutil.which("osslsigncode") is None,
                                reason="osslsigncode is not installed (apt-get install osslsigncode; .ci/run does)")
PASSWORD = "test-password"


def _certificate(directory: Path, name: str) -> tuple[Path, Path, str]:
    """A self-signed code-signing certificate: (PKCS#12 file, PEM certificate, sha256 of its DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .sign(key, hashes.SHA256()))
    p12 = directory / f"{name}.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(
        name.encode(), key, cert, None, serialization.BestAvailableEncryption(PASSWORD.encode())))
    pem = directory / f"{name}.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return p12, pem, hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _launcher(name: str) -> Path:
    spec = importlib.util.find_spec("setuptools")
    assert spec is not None and spec.origin
    path = Path(spec.origin).parent / name
    if not path.is_file():
        pytest.skip(f"setuptools ships no {name} here")
    return path


def _sign_with(p12: Path, path: Path) -> None:
    out = path.with_name(path.name + ".tmp")
    subprocess.run(["osslsigncode", "sign", "-pkcs12", str(p12), "-pass", PASSWORD, "-h", "sha256",
                    "-in", str(path), "-out", str(out)], check=True, capture_output=True)
    out.replace(path)


def _signature_offset(path: Path) -> tuple[int, int]:
    import pefile

    pe = pefile.PE(str(path), fast_load=True)
    entry = pe.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]]
    text = next(s for s in pe.sections if s.Name.rstrip(b"\0") == b".text")
    pe.close()
    return entry.VirtualAddress, text.PointerToRawData


@pytest.fixture
def signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    keys = tmp_path / "keys"
    keys.mkdir()
    p12, pem, fingerprint = _certificate(keys, "mlfreeze-test-publisher")
    vendor_p12, vendor_pem, _ = _certificate(keys, "some-vendor")
    bundle = make_bundle(tmp_path / "dist", "win-cpu", "lite")
    shutil.copyfile(_launcher("cli-64.exe"), bundle / "tool.exe")
    shutil.copyfile(_launcher("cli-32.exe"), bundle / "_internal" / "helper.dll")
    shutil.copyfile(_launcher("cli-64.exe"), bundle / "_internal" / "vendor.dll")
    _sign_with(vendor_p12, bundle / "_internal" / "vendor.dll")  # a vendor's signature: kept as it is
    vendor_before = (bundle / "_internal" / "vendor.dll").read_bytes()
    env = {"MLFREEZE_SIGN_PFX": str(p12), "MLFREEZE_SIGN_PFX_PASSWORD": PASSWORD}
    record = signing.sign_bundle(bundle, host_os="windows", signing=Signing(windows=WindowsSigning()), env=env)
    assert record is not None
    seal(bundle, "win-cpu", "lite", signing=record)  # RECORD and BUILD-INFO after signing, as the freeze does
    ca = keys / "trusted.pem"
    ca.write_bytes(pem.read_bytes() + vendor_pem.read_bytes())
    monkeypatch.setenv(signing.CA_ENV, str(ca))
    return {"bundle": bundle, "record": record, "fingerprint": fingerprint, "vendor_p12": vendor_p12,
            "vendor_before": vendor_before}


def test_sign_then_seal_then_audit_passes(signed: dict, capsys: pytest.CaptureFixture[str]) -> None:
    bundle, record = signed["bundle"], signed["record"]
    assert record["kind"] == "authenticode" and record["tool"] == "osslsigncode"
    assert record["files"] == ["_internal/helper.dll", "tool.exe"]  # the vendor-signed DLL is left alone
    assert record["certificate_sha256"] == signed["fingerprint"]
    assert (bundle / "_internal" / "vendor.dll").read_bytes() == signed["vendor_before"]
    for rel in record["files"]:
        assert signing.pe_signed(bundle / rel) and signing.signer_sha256(bundle / rel) == signed["fingerprint"]
    info = json.loads((bundle / "BUILD-INFO.json").read_text())
    assert info["signing"] == record
    assert cli.main(["audit", str(bundle)]) == 0
    assert f"audit: OK {bundle.name}" in capsys.readouterr().out


def _reseal(bundle: Path, record: dict) -> None:
    """RECORD and BUILD-INFO rewritten to match the damaged bytes: only the signature check can catch it."""
    seal(bundle, "win-cpu", "lite", signing=record)


@pytest.mark.parametrize("damage", ["signature", "code"])
def test_a_tampered_signature_or_signed_code_fails_the_audit(signed: dict, damage: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    bundle = signed["bundle"]
    exe = bundle / "tool.exe"
    sig_at, text_at = _signature_offset(exe)
    data = bytearray(exe.read_bytes())
    at = len(data) - 300 if damage == "signature" else text_at + 64  # inside the PKCS#7 signature / the code
    assert (at > sig_at) == (damage == "signature")
    data[at] ^= 0xFF
    exe.write_bytes(bytes(data))
    _reseal(bundle, signed["record"])
    assert cli.main(["audit", str(bundle)]) == 3
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ": signature: " in ln]
    assert len(lines) == 1 and "tool.exe" in lines[0] and "does not verify" in lines[0], out


def test_a_file_signed_by_another_certificate_fails_the_audit(signed: dict,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    bundle = signed["bundle"]
    helper = bundle / "_internal" / "helper.dll"
    subprocess.run(["osslsigncode", "remove-signature", "-in", str(helper), "-out", str(helper) + ".u"], check=True,
                   capture_output=True)
    Path(str(helper) + ".u").replace(helper)
    _sign_with(signed["vendor_p12"], helper)  # valid, trusted, but not the publisher's certificate
    _reseal(bundle, signed["record"])
    assert cli.main(["audit", str(bundle)]) == 3
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ": signature: " in ln)
    assert "_internal/helper.dll" in line and "BUILD-INFO.json records" in line


def test_an_intact_signature_from_an_untrusted_certificate_is_a_note(signed: dict, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Without the test CA the self-signed signatures do not chain to this host's trust store: the
    audit passes (code and signatures intact, signer = the recorded certificate) and says so."""
    monkeypatch.delenv(signing.CA_ENV)
    assert cli.main(["audit", str(signed["bundle"])]) == 0
    out = capsys.readouterr().out
    note = next(ln for ln in out.splitlines() if "does not trust" in ln)
    assert "3 signed file(s)" in note and signing.CA_ENV in note


def test_a_tampered_signature_fails_even_when_its_signer_is_untrusted(signed: dict, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(signing.CA_ENV)
    exe = signed["bundle"] / "tool.exe"
    data = bytearray(exe.read_bytes())
    data[len(data) - 300] ^= 0xFF
    exe.write_bytes(bytes(data))
    _reseal(signed["bundle"], signed["record"])
    assert cli.main(["audit", str(signed["bundle"])]) == 3
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ": signature: " in ln]
    assert len(lines) == 1 and "tool.exe" in lines[0]


def test_without_its_secrets_the_bundle_stays_unsigned_and_release_says_so_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = make_bundle(tmp_path / "dist", "win-cpu", "lite")
    shutil.copyfile(_launcher("cli-64.exe"), bundle / "tool.exe")
    lines: list[str] = []
    assert signing.sign_bundle(bundle, host_os="windows", signing=Signing(windows=WindowsSigning()), env={},
                               log=lines.append) is None
    assert len(lines) == 1 and "NOT signed" in lines[0] and "$MLFREEZE_SIGN_PFX" in lines[0]
    assert not signing.pe_signed(bundle / "tool.exe")
    seal(bundle, "win-cpu", "lite")
    make_bundle(tmp_path / "dist", "linux-cpu", "lite")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    assert cli.main(["release", str(tmp_path / "dist")]) == 0
    notes = [ln for ln in capsys.readouterr().out.splitlines() if "unsigned" in ln]
    assert len(notes) == 1 and "2 of 2 bundle(s) are unsigned" in notes[0]
