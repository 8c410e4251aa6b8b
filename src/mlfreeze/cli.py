"""``mlfreeze`` / ``python -m mlfreeze``: the command-line contract (README.md "Exit codes").

The parser is built here from data; each sub-command's work lives in its own
stage module, imported only when that sub-command runs, so ``--help`` and
``plan`` never import the ML stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from mlfreeze import __version__
from mlfreeze.errors import EXIT_CODES, MlfreezeError
from mlfreeze_runtime.buildinfo import FLAVORS

# sub-command -> "module:function" taking the parsed namespace, returning an exit code
COMMANDS: dict[str, str] = {
    "init": "mlfreeze.init:main",
    "lock": "mlfreeze.project.lock:main",
    "plan": "mlfreeze.plan:main",
    "doctor": "mlfreeze.project.doctor:main",
    "fetch": "mlfreeze.models.fetch:main",
    "verify": "mlfreeze.models.verification:main",
    "export": "mlfreeze.models.export:main",
    "freeze": "mlfreeze.bundle.freeze:main",
    "sizes": "mlfreeze.sizes.report:main",
    "build": "mlfreeze.build:main",
    "release": "mlfreeze.release.assemble:main",
    "publish": "mlfreeze.release.publish:main",
    "audit": "mlfreeze.bundle.audit:main",
    "image": "mlfreeze.release.image:main",
}


def _add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="model_set", default=None, metavar="S",
                   help="model set from the manifest (default: the project's, else 'default')")
    p.add_argument("--manifest", default=None, metavar="F",
                   help="models manifest (default: src/mlfreeze/specs/models.toml)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="model cache (default: $MLFREEZE_CACHE or the user cache dir)")


def _add_platform(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--platform", required=required, metavar="P",
                   help="platform profile (see src/mlfreeze/platforms/*.toml)")


def _add_image(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE_DIR", help="a Linux full or slim bundle: dist/<app>-<ver>-<plat>-<flavor>")
    p.add_argument("--load", action="store_true", help="also copy it into local container storage (podman)")
    p.add_argument("--push", metavar="REF", help="also push it to REF, e.g. ghcr.io/OWNER/APP:TAG (skopeo)")
    p.add_argument("--port", type=int, default=8080, help="the container port (default 8080; the app reads it from "
                                                         "its serve.port_env, or {port} in serve.args)")
    p.add_argument("--uid", type=int, default=65532, help="the app's numeric non-root user (default 65532)")
    p.add_argument("--suite", default=None, help="Debian release of the base (default: the oldest supported one "
                                                 "with the glibc the bundle needs)")
    p.add_argument("--package", action="append", default=[], metavar="PKG", help="an extra Debian package (repeatable)")
    p.add_argument("--base-tar", default=None, metavar="TAR", help="a prepared root file system tar (offline hosts)")
    p.add_argument("--out", default=None, metavar="DIR", help="where image folders go (default: <dist>/image)")


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit codes:\n" + "\n".join(f"  {k} {v}" for k, v in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="mlfreeze",
        description="Build, verify, freeze and release Python ML applications.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mlfreeze {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("init", help="make this directory an mlfreeze project (scaffolds an app when empty)")
    p.add_argument("--app", default=None, metavar="NAME", help="the app's name (default: the directory's)")
    p.add_argument("--entry", default=None, metavar="SCRIPT|MODULE:FUNCTION",
                   help="the app's entry: a script (src/main.py), an entry point (package.module:function) or a "
                        "[project.scripts] name (default: [project.scripts], else the usual __main__ places)")
    p.add_argument("--force", action="store_true", help="overwrite files init would write")
    p.add_argument("--no-lock", action="store_true", help="skip writing locks/ (resolving needs the index)")

    p = sub.add_parser("lock", help="write the hash-pinned lock of a profile's build environment")
    _add_platform(p)
    p.add_argument("--variant", choices=("slim",), default=None,
                   help="slim: the torch-free environment of a slim-only build")
    p.add_argument("--check", action="store_true", help="exit 2 when the lock is missing or stale")
    p.add_argument("--upgrade", action="store_true",
                   help="resolve afresh (by default a relock keeps the existing lock's pins where its inputs allow)")

    p = sub.add_parser("plan", help="show every step a build would run (pure; any host)")
    _add_platform(p)
    p.add_argument("--flavor", choices=FLAVORS, default=None,
                   help="only this flavor (default: the profile's flavors)")
    p.add_argument("--set", dest="model_set", default=None, metavar="S")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")

    p = sub.add_parser("doctor", help="check that the installed environment matches a profile")
    _add_platform(p)
    p.add_argument("--flavors", default=None, metavar="full,lite,slim",
                   help="the flavors this environment builds; slim alone: torch-free, no torch checks")

    p = sub.add_parser("fetch", help="download and checksum the models of a set")
    _add_models(p)
    p.add_argument("--offline", action="store_true",
                   help="no network: the cache and local files only (also MLFREEZE_OFFLINE=1)")

    p = sub.add_parser("export", help="CLIP towers to ONNX (pinned, cached, or exported in a child process)")
    _add_models(p)

    p = sub.add_parser("verify", help="functional verification of a model set")
    _add_models(p)
    p.add_argument("--device", default=None, metavar="D", help="auto|cpu|cuda|cuda:N|mps")
    p.add_argument("--platform", default=None, metavar="P",
                   help="profile whose expected onnxruntime providers are checked")
    p.add_argument("--report", default=None, metavar="F.json")
    p.add_argument("--junit", default=None, metavar="F.xml")
    p.add_argument("--strict", action="store_true", help="warnings fail the gate")
    p.add_argument("--pin-goldens", action="store_true",
                   help="record reference embeddings on the CPU")
    p.add_argument("--flavor", default="full", metavar="F",
                   help="the flavor whose models this report verifies (recorded in --report; default full)")

    p = sub.add_parser("freeze", help="freeze one bundle with PyInstaller")
    _add_platform(p)
    p.add_argument("--flavor", choices=FLAVORS, required=True)
    _add_models(p)
    p.add_argument("--force", action="store_true",
                   help="run PyInstaller even when nothing or only the app's own files changed")
    p.add_argument("--verify-report", default=None, metavar="F.json",
                   help="this flavor's verify report (mlfreeze verify --report), recorded in BUILD-INFO")
    p.add_argument("--verify", action="store_true",
                   help="before skipping an unchanged bundle, re-hash every file against its RECORD")

    p = sub.add_parser("sizes", help="where every megabyte of a bundle went")
    p.add_argument("bundles", nargs="*", metavar="BUNDLE_DIR")
    p.add_argument("--venv", default=None, metavar="DIR",
                   help="report an installed environment instead of / beside bundles")
    p.add_argument("--baseline", default=None, metavar="F.json")
    p.add_argument("--json", dest="json_out", default=None, metavar="F")
    p.add_argument("--markdown", default=None, metavar="F")
    p.add_argument("--html", default=None, metavar="F")

    p = sub.add_parser("build", help="every stage in order for one platform")
    _add_platform(p)
    p.add_argument("--flavors", default=None, metavar="full,lite,slim")
    _add_models(p)
    p.add_argument("--force", action="store_true",
                   help="run PyInstaller even when nothing or only the app's own files changed")
    p.add_argument("--plan", action="store_true", help="print the plan instead of building (any host)")
    p.add_argument("--verify", action="store_true",
                   help="before skipping an unchanged bundle, re-hash every file against its RECORD")

    p = sub.add_parser("audit", help="is a bundle shippable: RECORD, model pins, closure, verification "
                                     "(exit 3 integrity, 1 verification)")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE_DIR")

    p = sub.add_parser("release", help="audit, archives, SHA256SUMS and the release manifest")
    p.add_argument("dist", metavar="DIST_DIR")
    p.add_argument("--version", dest="release_version", default=None, metavar="V")
    p.add_argument("--model-pack", metavar="SET", help="only publish model set SET (from the bundle in DIST_DIR "
                   "that ships it) as a signed model pack into --repo; keys as for publish")
    p.add_argument("--repo", metavar="DIR", help="the update repository (with --model-pack)")
    p.add_argument("--keys", metavar="DIR", help="folder with the role keys (with --model-pack)")

    p = sub.add_parser("publish", help="sign a release's bundles into a TUF update repository (blobs, index, "
                                       "metadata); keys from --keys DIR or MLFREEZE_TUF_KEY_<ROLE>")
    p.add_argument("bundles", nargs="*", metavar="BUNDLE_DIR")
    p.add_argument("--repo", required=True, metavar="DIR", help="the update repository (synced from its stable URL)")
    p.add_argument("--keys", metavar="DIR", help="folder with root.pem, targets.pem, snapshot.pem, timestamp.pem")
    p.add_argument("--cuda-archs", action="append", metavar="PLATFORM=sm_75,sm_80",
                   help="CUDA arch list of a CUDA platform's variants (repeatable)")
    p.add_argument("--release", metavar="RELEASE_DIR", help="sign the bundles of a `mlfreeze release` directory "
                   "(archives unpacked and checked against its manifest): what the release workflow's merge job does")
    p.add_argument("--init-root", action="store_true", help="only write the new repository's metadata/1.root.json "
                   "(name it in [tool.mlfreeze] update_root before the first release)")
    p.add_argument("--resign", action="store_true", help="only re-sign snapshot and timestamp (scheduled job)")
    p.add_argument("--generate-keys", metavar="DIR", help="write a new Ed25519 key per role to DIR and exit")
    p.add_argument("--model-pack", metavar="MODELS_DIR", help="publish this models/ folder as a model pack "
                                                           "(needs --app, --set, --pack-version)")
    p.add_argument("--packs", action="store_true", help="write files as packs (packs/<sha256>.pack, each under "
                   "--pack-limit) instead of loose blobs, for hosts without folders such as GitHub release assets")
    p.add_argument("--pack-limit", metavar="SIZE", help="largest pack, e.g. '1900 MiB' (default 2032 MiB, "
                   "under GitHub's 2 GiB asset limit)")
    p.add_argument("--pack-url", metavar="URL", help="where clients fetch new packs, with {name}, e.g. "
                   "https://github.com/OWNER/REPO/releases/download/TAG/{name} "
                   "(default: packs/ under the repository's URL)")
    p.add_argument("--app", dest="pack_app", metavar="NAME")
    p.add_argument("--set", dest="pack_set", metavar="SET")
    p.add_argument("--pack-version", metavar="V")
    _add_image(sub.add_parser("image", help="OCI image of a verified Linux full/slim bundle of a server app "
                                            "([tool.mlfreeze.serve]): ready only after its models' sha256 and "
                                            "self-test pass (--load: podman, --push REF)"))
    return parser


def _resolve(spec: str) -> Callable[[argparse.Namespace], int]:
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(_resolve(COMMANDS[args.command])(args) or 0)
    except MlfreezeError as exc:
        print(f"mlfreeze {args.command}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"mlfreeze {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
