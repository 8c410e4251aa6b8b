"""``[tool.mlfreeze.signing]``: how the freeze signs a bundle's binaries (docs/your-app.md "Signing").

Secrets never live in pyproject.toml: the table names the environment variables that hold them
(the release workflow fills those from a GitHub environment's secrets). A table without its
secrets set (a developer's build) leaves the bundle unsigned, and says so.

::

    [tool.mlfreeze.signing.windows]              # Authenticode: signtool on Windows, osslsigncode elsewhere
    certificate_env = "MLFREEZE_SIGN_PFX"        # names a variable holding the path of a PKCS#12 (.pfx) file
    password_env = "MLFREEZE_SIGN_PFX_PASSWORD"  # names a variable holding its password
    timestamp_url = "http://timestamp.digicert.com"   # RFC 3161; "" signs without a timestamp

    [tool.mlfreeze.signing.macos]                # codesign (hardened runtime), notarytool, stapler
    identity = "Developer ID Application: Example Corp (ABCDE12345)"
    entitlements = "packaging/entitlements.plist"
    notarize = true
    apple_id_env = "MLFREEZE_NOTARY_APPLE_ID"
    team_id_env = "MLFREEZE_NOTARY_TEAM_ID"
    password_env = "MLFREEZE_NOTARY_PASSWORD"    # an app-specific password
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlfreeze.errors import ConfigError
from mlfreeze.schema import Table

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KEYS = ("windows", "macos")
WINDOWS_TOOLS = ("auto", "signtool", "osslsigncode")


@dataclass(frozen=True, kw_only=True)
class WindowsSigning:
    """Authenticode. ``tool``: ``auto`` = signtool on a Windows host, osslsigncode elsewhere."""

    certificate_env: str = "MLFREEZE_SIGN_PFX"
    password_env: str = "MLFREEZE_SIGN_PFX_PASSWORD"
    timestamp_url: str = ""
    description: str = ""  # shown by Windows in the UAC prompt (signtool /d, osslsigncode -n)
    url: str = ""  # the publisher's URL (signtool /du, osslsigncode -i)
    tool: str = "auto"


@dataclass(frozen=True, kw_only=True)
class MacSigning:
    """codesign every nested Mach-O with the hardened runtime; notarize and staple when ``notarize``."""

    identity: str
    entitlements: Path | None = None
    keychain: str = ""  # codesign --keychain (a temporary keychain the workflow created)
    notarize: bool = True
    apple_id_env: str = "MLFREEZE_NOTARY_APPLE_ID"
    team_id_env: str = "MLFREEZE_NOTARY_TEAM_ID"
    password_env: str = "MLFREEZE_NOTARY_PASSWORD"


@dataclass(frozen=True, kw_only=True)
class Signing:
    windows: WindowsSigning | None = None
    macos: MacSigning | None = None

    def for_os(self, host_os: str) -> WindowsSigning | MacSigning | None:
        """The table that signs a bundle of ``host_os`` (None: that OS is not signed)."""
        return self.windows if host_os == "windows" else self.macos if host_os == "macos" else None


def _env_name(t: Table, key: str, default: str) -> str:
    value: str = t.opt(key, str, default)
    if not _ENV_NAME.match(value):
        raise t.error(key, f"is {value!r}; it names an environment variable (letters, digits, '_'), never the "
                           "secret itself")
    return value


def parse_signing(raw: Mapping[str, Any], path: Path, root: Path) -> Signing:
    """``[tool.mlfreeze.signing]`` validated; ConfigError (exit 2) naming the key otherwise."""
    t = Table(dict(raw), path, "tool.mlfreeze.signing")
    win_raw = t.opt("windows", dict, None)
    mac_raw = t.opt("macos", dict, None)
    t.done()
    windows = macos = None
    if win_raw is not None:
        w = Table(win_raw, path, "tool.mlfreeze.signing.windows")
        windows = WindowsSigning(certificate_env=_env_name(w, "certificate_env", "MLFREEZE_SIGN_PFX"),
                                 password_env=_env_name(w, "password_env", "MLFREEZE_SIGN_PFX_PASSWORD"),
                                 timestamp_url=w.opt("timestamp_url", str, ""),
                                 description=w.opt("description", str, ""), url=w.opt("url", str, ""),
                                 tool=w.choice("tool", WINDOWS_TOOLS) if "tool" in win_raw else "auto")
        w.done()
        if windows.timestamp_url and not windows.timestamp_url.startswith(("http://", "https://")):
            raise w.error("timestamp_url", f"is {windows.timestamp_url!r}; expected an RFC 3161 http(s) URL")
    if mac_raw is not None:
        m = Table(mac_raw, path, "tool.mlfreeze.signing.macos")
        identity = m.take("identity", str)
        if not identity.strip():
            raise m.error("identity", "is empty; name the signing identity (\"Developer ID Application: ...\")")
        entitlements_value = m.opt("entitlements", str, None)
        entitlements = root / entitlements_value if entitlements_value else None
        macos = MacSigning(identity=identity, entitlements=entitlements, keychain=m.opt("keychain", str, ""),
                           notarize=m.opt("notarize", bool, True),
                           apple_id_env=_env_name(m, "apple_id_env", "MLFREEZE_NOTARY_APPLE_ID"),
                           team_id_env=_env_name(m, "team_id_env", "MLFREEZE_NOTARY_TEAM_ID"),
                           password_env=_env_name(m, "password_env", "MLFREEZE_NOTARY_PASSWORD"))
        m.done()
        if entitlements is not None and not entitlements.is_file():
            raise ConfigError(f"{path}: key 'tool.mlfreeze.signing.macos.entitlements' points at {entitlements}, "
                              "which does not exist")
    return Signing(windows=windows, macos=macos)
