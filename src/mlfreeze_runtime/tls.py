"""Where the runtime's HTTPS finds the certificates it trusts, and how a TLS failure is told.

A bundle's Python carries its own OpenSSL, built on another machine: its compiled-in certificate
paths (``/usr/lib/ssl`` on Debian builds, ``/usr/local/ssl`` on python.org builds) may not exist on
the user's machine (Fedora and RHEL keep theirs under ``/etc/pki``). :func:`ssl_context` therefore
chooses, in order:

1. ``REQUESTS_CA_BUNDLE``, then ``SSL_CERT_FILE`` (a PEM file, or a hashed folder), when set: the
   administrator's choice (a private mirror, a TLS-inspecting proxy);
2. the machine's own trust store through ``truststore`` (Windows' and macOS' system verifier; on
   Linux, OpenSSL's default paths, else the distribution's bundle wherever it lies: ``/etc/ssl``,
   ``/etc/pki/tls``, ``/etc/pki/ca-trust``, SUSE's ``/etc/ssl/ca-bundle.pem``);
3. ``certifi``'s bundle (frozen into the bundle) when the machine has no trust store at all.

A certificate that does not verify is a :func:`failure` message naming the variable to set; it is
never retried (a retry cannot change a certificate).
"""

from __future__ import annotations

import os
import re
import ssl
import sys
from urllib.parse import urlparse

CA_ENV = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
# the distributions' CA bundles (as truststore and certifi-system-store probe them on Linux)
LINUX_CA_FILES = ("/etc/ssl/cert.pem", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "/etc/pki/tls/cert.pem",
                  "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/ca-bundle.pem")
_HASHED = re.compile(r"^[0-9a-fA-F]{8}\.[0-9]$")


class CaConfigError(ValueError):
    """A CA variable names a file or folder that does not exist (the message names the variable)."""


def ca_override() -> tuple[str, str] | None:
    """(variable, value) of the first CA variable set (REQUESTS_CA_BUNDLE, SSL_CERT_FILE), else None."""
    for name in CA_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return name, value
    return None


def system_store() -> str | None:
    """Where this Linux machine keeps its CA certificates (a file or folder), None when it has none.
    Not used on Windows and macOS, whose system verifier truststore calls."""
    paths = ssl.get_default_verify_paths()
    if paths.cafile:
        return paths.cafile
    if paths.capath and os.path.isdir(paths.capath) and any(_HASHED.match(n) for n in os.listdir(paths.capath)):
        return paths.capath
    return next((f for f in LINUX_CA_FILES if os.path.isfile(f)), None)


def _certifi() -> str | None:
    try:
        import certifi
    except ImportError:
        return None
    where = certifi.where()
    return where if os.path.isfile(where) else None


def ssl_context() -> tuple[ssl.SSLContext, str]:
    """(a client context that verifies certificates and host names, where its trust comes from).

    Raises CaConfigError when REQUESTS_CA_BUNDLE or SSL_CERT_FILE names nothing that exists."""
    override = ca_override()
    if override is not None:
        name, value = override
        if os.path.isdir(value):
            return ssl.create_default_context(capath=value), f"{name}={value}"
        if not os.path.isfile(value):
            raise CaConfigError(f"{name}={value!r}: no such CA file; point it at a PEM bundle or unset it")
        try:
            return ssl.create_default_context(cafile=value), f"{name}={value}"
        except ssl.SSLError as exc:
            raise CaConfigError(f"{name}={value!r}: not a PEM CA bundle ({exc.reason or exc}); fix or unset it") \
                from None
    linux = sys.platform.startswith("linux")
    store = system_store() if linux else None
    if not linux or store is not None:
        try:
            import truststore

            ctx: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        except ImportError:  # a bundle frozen without truststore: OpenSSL's own context
            ctx = ssl.create_default_context()
        if store is not None:  # also a bundle truststore would not probe (/etc/pki/tls/certs/ca-bundle.crt)
            ctx.load_verify_locations(cafile=store if os.path.isfile(store) else None,
                                      capath=store if os.path.isdir(store) else None)
        return ctx, f"the system trust store ({store})" if store else "the system trust store"
    bundled = _certifi()
    if bundled is not None:
        return ssl.create_default_context(cafile=bundled), "certifi's bundle (no system trust store found)"
    return ssl.create_default_context(), "no trust store found"


def is_tls_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or the reason it wraps) is a TLS failure a retry cannot cure."""
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, ssl.SSLCertVerificationError) or isinstance(exc, ssl.SSLCertVerificationError) or (
        isinstance(reason, ssl.SSLError) and not isinstance(reason, (ssl.SSLEOFError, ssl.SSLZeroReturnError,
                                                                     ssl.SSLWantReadError, ssl.SSLWantWriteError)))


def failure(exc: BaseException, url: str, trusted: str) -> str:
    """One line for a TLS failure of ``url``: what failed, what was trusted, the variable to set."""
    reason = getattr(exc, "reason", exc)
    detail = getattr(reason, "verify_message", None) or getattr(reason, "reason", None) or str(reason)
    return (f"TLS: the certificate of {urlparse(url).hostname} could not be verified ({detail}; trusted: {trusted}); "
            f"not retried. Set SSL_CERT_FILE to the PEM bundle of your CA (a private mirror, a TLS-inspecting "
            f"proxy, or a machine without a CA store)")
