"""``<app>-update``: install, update, rollback, status and model packs for an install root.

Exit codes: 0 ok, 1 verification failed (audit, acceptance or health check; nothing switched
or rolled back by itself), 2 usage (no variant for this machine, nothing to roll back to,
no root of trust, a ``--trust`` that is not a valid root or differs from the saved one, a
root folder that cannot be written, a bad ``MLFREEZE_FETCH_*``/CA variable), 3 download or
integrity (tampered, expired or rolled-back metadata, a blob whose bytes are not the signed
ones, a name or path from the metadata that would leave the root, a TLS certificate that does
not verify, a server too slow for the download policy, a disk that is full or fails to write).
Every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from mlfreeze_runtime import buildinfo, record
from mlfreeze_runtime.update import http, index, install, machine, pointer, trust
from mlfreeze_runtime.update.errors import FetchError, UpdateError, UsageError
from mlfreeze_runtime.update.variants import Machine, choose_variant


def default_root(exe: Path | None = None) -> Path:
    """The install holding the running executable (``<root>/versions/<name>/<exe>``), else the
    per-user data dir: $XDG_DATA_HOME or ~/.local/share, ~/Library/Application Support, %LOCALAPPDATA%."""
    exe = exe or Path(sys.executable).resolve()
    if exe.parent.parent.name == pointer.VERSIONS:
        return exe.parent.parent.parent
    app = exe.stem.removesuffix("-update") or "mlfreeze-app"
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / app


def load_index(base: str, root: Path, trust_file: Path | None, *,
               reset_trust: bool = False) -> tuple[dict[str, Any], str]:
    """(index document, how it was verified). Signed repositories go through TUF; an unsigned
    local directory is accepted (the user's own files); an unsigned URL is refused. A ``--trust``
    file is checked as a root before anything else (UsageError, exit 2)."""
    given = trust.load_root(trust_file) if trust_file is not None else None  # checked before any fetch
    install.ensure_fetchable(base)
    if trust.has_metadata(base):
        cur = pointer.for_root(root).read()
        bundled = trust.bundled_root(root / pointer.VERSIONS / cur) if cur else None
        if bundled is None and getattr(sys, "frozen", False):  # <app>-update of a bundle not yet installed
            bundled = trust.bundled_root(Path(sys.executable).resolve().parent)
        data = trust.refresh_index(base, root, trust_root=given or trust.trust_root_for(None, bundled),
                                   reset=reset_trust)
        return index.parse(data, http.join(base, "index.json")), "signed metadata verified (TUF)"
    if http.is_local(base):
        where = http.join(base, index.INDEX_NAME)
        return index.parse(http.fetch_bytes(where), where), "unsigned local directory (no metadata/)"
    raise FetchError(f"{base}: no signed metadata (metadata/timestamp.json); remote updates must be signed: refused")


def _choose(doc: dict[str, Any], m: Machine, args: argparse.Namespace,
            flavor: str | None) -> tuple[dict[str, Any], list[str]]:
    entries = {e["name"]: e for e in doc["variants"]}
    variants = [index.to_variant(e) for e in doc["variants"]]
    chosen, reasons = choose_variant(m, variants, flavor=flavor, override=args.variant)
    if chosen is None:
        raise UsageError(f"release {doc['version']}: {reasons[-1]}; run status --explain --from SRC "
                         "to see why, or pass --variant NAME")
    return entries[chosen.name], [f"machine: {machine.describe(m)}"] + reasons


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_install(args: argparse.Namespace, root: Path, *, update: bool) -> int:
    with install.locked(root):
        for name in install.clean_leftovers(root):
            _say(f"removed leftover {name}")
        install.finish_pending(root, progress=_say)
        state = install.read_state(root)
        source = args.source or state.get("source")
        if not source:
            raise UsageError(f"{root}: no --from given and no source recorded; pass --from URL|DIR")
        flavor = args.flavor
        cur = pointer.for_root(root).read()
        if update and flavor is None and cur:
            flavor = install.buildinfo.read(root / pointer.VERSIONS / cur)["flavor"]
        doc, how = load_index(source, root, args.trust, reset_trust=args.reset_trust)
        entry, reasons = _choose(doc, machine.detect(), args, flavor)
        _say(f"release {doc['version']}: {how}; variant {entry['name']}")
        try:
            out = install.install_entry(root, source, entry, keep=args.keep, reasons=reasons, source=source,
                                        progress=_say, locations=index.locations(doc))
        except OSError:
            install.drop_downloads(root)  # a disk that refused a write must not stay full of our bytes
            raise
        _say(json.dumps({"current": out.name, "previous": out.previous, "downloaded_bytes": out.downloaded_bytes,
                         "requests": out.requests,
                         "reused_files": out.reused_files, "fetched_files": out.fetched_files,
                         "seconds": {k: round(v, 3) for k, v in out.seconds.items()}, "note": out.note}))
    return 0


def cmd_rollback(root: Path) -> int:
    started = time.monotonic()
    with install.locked(root):
        install.clean_leftovers(root)
        was, now = install.rollback(root)
    _say(f"rolled back from {was} to {now} in {time.monotonic() - started:.2f} s")
    return 0


def cmd_status(args: argparse.Namespace, root: Path) -> int:
    state = install.read_state(root)
    cur = pointer.for_root(root).read()
    doc: dict[str, Any] = {"root": str(root), "current": cur, "pointer": pointer.for_root(root).kind,
                           "accepted": cur is not None and cur in install.accepted(root),
                           "installed": install.installed(root), "history": install.history(root),
                           "source": state.get("source")}
    if args.explain:
        m = machine.detect()
        if args.source:
            rel, _ = load_index(args.source, root, args.trust, reset_trust=False)
            _, reasons = _choose(rel, m, args, args.flavor)
            doc["explain"] = reasons
        else:
            doc["explain"] = state.get("reasons") or [f"machine: {machine.describe(m)}",
                                                      "no install recorded a variant choice yet"]
    if args.json:
        _say(json.dumps(doc, indent=1))
        return 0
    pending = "" if cur is None or doc["accepted"] else " (health check after the switch pending: run update)"
    _say(f"root: {root}\ncurrent: {cur or 'none'}{pending}\ninstalled: {', '.join(doc['installed']) or 'none'}")
    if args.explain:
        _say("why this variant:")
        for line in doc["explain"]:
            _say(f"  {line}")
    return 0


def cmd_models(args: argparse.Namespace, root: Path) -> int:
    from mlfreeze_runtime.update import models

    with install.locked(root):
        install.clean_leftovers(root)
        install.finish_pending(root, progress=_say)
        models.finish_pending(root, progress=_say)
        doc, base = models.load_pack(args.source, root, args.trust)
        out = models.install_pack(root, base, doc)
    _say(json.dumps(out))
    return 0


def os_error_line(exc: OSError, root: Path) -> str:
    """One line for a failed read or write under ``root``: what, where, what to do."""
    where = exc.filename or root
    what = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{where}: {what}: the disk holding {root} is full; partial downloads were removed and "
                f"current is unchanged; free some space and run the update again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}: {what}; pass --root a folder you can write (current is unchanged)"
    return f"{where}: {what} (OS error {exc.errno}); current is unchanged; run the update again"


def build_parser(prog: str = "mlfreeze-update") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Install, update and roll back this app side by side, "
                                "verified against its signed release.")
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, help="install root (default: the install running this, "
                        "else the per-user data dir)")
    pick = argparse.ArgumentParser(add_help=False)
    pick.add_argument("--from", dest="source", help="release base URL or directory")
    pick.add_argument("--variant", help="take this variant (name or platform) whatever the machine has")
    pick.add_argument("--flavor", choices=("full", "slim", "lite"), help="keep only this flavor")
    pick.add_argument("--trust", type=Path, help="root of trust (TUF root.json) when the install has none")
    pick.add_argument(trust.RESET_FLAG, dest="reset_trust", action="store_true",
                      help="replace the root of trust this install saved by the --trust given (checked first)")
    for name, text in (("install", "install the best variant of a release"),
                       ("update", "install the newest release from the recorded source, same flavor")):
        s = sub.add_parser(name, parents=[common, pick], help=text)
        s.add_argument("--keep", type=int, default=install.DEFAULT_KEEP, help="previous versions to keep")
    sub.add_parser("rollback", parents=[common], help="switch back to the previous version")
    s = sub.add_parser("models", parents=[common], help="install a model pack: verify, self-test, switch, "
                       "keep the old models as the backup")
    s.add_argument("--from", dest="source", required=True, help="signed repository URL, directory or model-pack.json")
    s.add_argument("--trust", type=Path, help="root of trust (TUF root.json) when the install has none")
    s = sub.add_parser("status", parents=[common, pick], help="what is installed, and why this variant")
    s.add_argument("--explain", action="store_true", help="print the reasons for the variant choice")
    s.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    frozen = getattr(sys, "frozen", False)
    args = build_parser(Path(sys.executable).stem if frozen else "mlfreeze-update").parse_args(argv)
    root = (args.root or default_root()).resolve()
    try:
        if args.command in ("install", "update"):
            if args.command == "install" and not args.source:
                raise UsageError("install needs --from URL|DIR")
            return cmd_install(args, root, update=args.command == "update")
        if args.command == "rollback":
            return cmd_rollback(root)
        if args.command == "models":
            return cmd_models(args, root)
        return cmd_status(args, root)
    except UpdateError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: {os_error_line(exc, root)}", file=sys.stderr)
        return 2 if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else 3
    except (record.RecordError, buildinfo.BuildInfoError) as exc:
        print(f"error: {exc}; reinstall with <app>-update install --from URL", file=sys.stderr)
        return 3
    except ModuleNotFoundError as exc:  # an updater frozen without python-tuf cannot check signatures
        print(f"error: this updater was built without {exc.name}, so it cannot verify signed update metadata; "
              "rebuild the bundle with mlfreeze (its build lock installs it)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
