"""``mlfreeze image BUNDLE_DIR [--load] [--push REF]``: an OCI image of a verified Linux bundle.

The bundle is audited first (RECORD, model pins, verification: what ships is what was
verified; exit 3 or 1 otherwise). Then, under ``dist/image/<bundle>/``::

    oci-layout, index.json, blobs/sha256/...   the OCI image layout (tag <version>-<platform>-<flavor>)
    Containerfile                              the same image for `docker buildx build` (ADDs the layer blobs)
    image.json                                 digest, layers, sizes, base packages, serve contract, pushes

Three layers, each a reproducible tar+gzip (mlfreeze.release.oci): the base (only the Debian
packages the bundle's ELF closure needs, mlfreeze.release.imagebase, plus /etc/passwd with the
non-root user), the bundle without ``models/``, and ``models/`` (so a new app version over the
same models re-uses the registry's models layer). Owner root, read-only for the app's numeric
user, no shell: the image runs with ``--read-only --cap-drop=ALL``. Same bundle + same
``SOURCE_DATE_EPOCH`` + same base packages -> the same image digest.

How the container starts is the app's own server contract, not guessed: ``[tool.mlfreeze.serve]``,
frozen into the bundle as ``app-contract.json`` (covered by RECORD, so audited with the rest) and
read back here as a :class:`ServeSpec`: ``args`` (``{host}`` -> 0.0.0.0, ``{port}`` -> the container
port) become the image's ``Cmd`` after the bundle's executable, ``env`` and ``port_env`` its
environment, ``ready`` and ``live`` the readiness and liveness paths recorded in its labels and
image.json (the probes of release.yml's smoke test, the compose file and the Kubernetes probes). A
bundle of an app without a ``serve`` section is refused (exit 2): nothing would say how it serves
or when it is ready. ``--load`` copies the image into the local
container storage (skopeo, as podman sees it), ``--push REF`` to a registry (skopeo
``--preserve-digests``: the registry's digest is the one recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlfreeze import _proc as proc
from mlfreeze.errors import FreezeError, UsageError
from mlfreeze.release import imagebase, oci
from mlfreeze_runtime import buildinfo as _buildinfo
from mlfreeze_runtime.buildinfo import MODEL_FLAVORS
from mlfreeze_runtime.contract import CONTRACT_FILE, ContractError, Serve, fill, read_contract
from mlfreeze_runtime.record import STAMP_NAME

IMAGE_DIR = "image"
IMAGE_JSON = "image.json"
CONTAINERFILE = "Containerfile"
SCHEMA_VERSION = 1
DEFAULT_UID = 65532  # distroless' "nonroot": numeric, so no user database lookup is needed
INSTALL_ROOT = "opt"
EPOCH_ENV = "SOURCE_DATE_EPOCH"
DEFAULT_EPOCH = 315532800  # 1980-01-01, as the release archives
NOT_IN_IMAGE = (STAMP_NAME,)
MODELS = "models"


DEFAULT_PORT = 8080
LISTEN_HOST = "0.0.0.0"  # noqa: S104 (a container listens in its own network namespace; -p picks the host side)


@dataclass(frozen=True, kw_only=True)
class ServeSpec:
    """How the image's process serves: the bundle's ``serve`` contract made concrete for a container
    (:meth:`from_contract`).

    ``command``: the arguments after the executable (``Cmd``); ``env``: ``(NAME, value)`` pairs the
    contract sets; ``port``: the container port; ``port_env``: the variable the app reads it from
    (None when the port is in ``command``); ``readiness``/``liveness``: the probe URL paths.
    """

    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    port: int = DEFAULT_PORT
    port_env: str | None = "PORT"
    readiness: str = "/readyz"
    liveness: str = "/livez"

    @classmethod
    def from_contract(cls, serve: Serve, *, port: int = DEFAULT_PORT) -> ServeSpec:
        """``args`` and ``env`` with ``{host}`` = 0.0.0.0 and ``{port}`` = ``port``; ``ready`` the
        readiness path, ``live`` (else ``ready``) the liveness path."""
        values = {"host": LISTEN_HOST, "port": str(port)}
        return cls(command=tuple(fill(list(serve.args), values)),
                   env=tuple(sorted(fill(dict(serve.env), values).items())), port=port, port_env=serve.port_env,
                   readiness=serve.ready, liveness=serve.live or serve.ready)

    def check(self) -> None:
        if not 0 < self.port < 65536:
            raise UsageError(f"--port {self.port} is not a TCP port (1-65535)")
        if self.port_env is not None and not self.port_env.isidentifier():
            raise UsageError(f"serve.port_env {self.port_env!r} is not an environment variable name")
        for key, path in (("serve.ready", self.readiness), ("serve.live", self.liveness)):
            if not path.startswith("/"):
                raise UsageError(f"{key} {path!r} must be an absolute URL path such as /readyz")


def serve_of(bundle: Path, *, port: int = DEFAULT_PORT) -> ServeSpec:
    """The :class:`ServeSpec` of the ``serve`` contract frozen into ``bundle`` (app-contract.json).
    UsageError (exit 2), one line, when the app declares none or the file is invalid."""
    try:
        contract = read_contract(bundle)
    except ContractError as exc:
        raise UsageError(f"{bundle.name}: {CONTRACT_FILE}: {exc}; rebuild the bundle with `mlfreeze build`") from None
    if contract.serve is None:
        raise UsageError(f"{bundle.name}: the app declares no [tool.mlfreeze.serve] (how its server starts, its port "
                         "variable, its readiness path), so an image would not know how to serve or when it is "
                         "ready; add one (docs/your-app.md, \"Servers and smoke commands\") and rebuild")
    return ServeSpec.from_contract(contract.serve, port=port)


@dataclass(frozen=True, kw_only=True)
class ImagePlan:
    """Everything one image build will do, fixed before anything is written."""

    bundle: Path
    info: Mapping[str, Any]
    out: Path  # dist/image/<bundle>/
    app: str
    tag: str  # <version>-<platform>-<flavor>
    arch: str  # OCI/Debian architecture: amd64, arm64
    accelerator: str
    serve: ServeSpec
    uid: int
    epoch: int
    install_dir: str  # opt/<app> (relative: a layer path)
    suite: str | None = None
    extra_packages: tuple[str, ...] = ()
    base_tar: Path | None = None
    cache_dir: Path | None = None

    @property
    def executable(self) -> str:
        return f"/{self.install_dir}/{self.app}"


@dataclass(frozen=True, kw_only=True)
class ImageResult:
    plan: ImagePlan
    digest: str  # the manifest's sha256:<hex>: the image digest a registry reports
    record: dict[str, Any] = field(default_factory=dict)  # image.json

    @property
    def layout(self) -> Path:
        return self.plan.out


def _epoch(env: Mapping[str, str]) -> int:
    raw = env.get(EPOCH_ENV, "").strip()
    if not raw:
        return DEFAULT_EPOCH
    if not raw.isdigit():
        raise UsageError(f"{EPOCH_ENV}={raw!r} is not a whole number of seconds since 1970; unset or fix it")
    return int(raw)


def plan_image(bundle: Path, *, serve: ServeSpec | None = None, port: int = DEFAULT_PORT, uid: int = DEFAULT_UID,
               suite: str | None = None, packages: Sequence[str] = (), base_tar: Path | None = None,
               out_root: Path | None = None, cache_dir: Path | None = None,
               env: Mapping[str, str] | None = None) -> ImagePlan:
    """Check the bundle is an imageable one (a Linux full or slim bundle with BUILD-INFO and a
    ``serve`` contract) and fix names, tag, architecture and how it serves (``serve``, default:
    :func:`serve_of` the bundle, on container port ``port``). UsageError (exit 2) for anything else."""
    env = os.environ if env is None else env
    bundle = bundle.resolve() if bundle.exists() else bundle
    if not bundle.is_dir():
        raise UsageError(f"{bundle}: not a folder; pass a bundle folder (dist/<app>-<version>-<platform>-<flavor>/)")
    try:
        info = _buildinfo.read(bundle)
    except _buildinfo.BuildInfoError as exc:
        raise UsageError(f"{exc}; pass a bundle made by `mlfreeze freeze` (dist/<app>-<version>-<platform>-<flavor>/)"
                         ) from None
    flavor, platform = str(info["flavor"]), str(info["platform"])
    if flavor not in MODEL_FLAVORS:
        raise UsageError(f"{bundle.name}: a {flavor} bundle has no models and no self-test, so it cannot be "
                         f"ready-when-verified; image a {' or '.join(MODEL_FLAVORS)} bundle")
    from mlfreeze.platforms.profiles import all_profiles

    profile = all_profiles().get(platform)
    host_os = profile.host_os if profile else ("linux" if platform.startswith("linux") else platform)
    if host_os != "linux":
        raise UsageError(f"{bundle.name}: images are Linux containers; {platform} is a {host_os} bundle "
                         "(image a linux-* bundle)")
    host_arch = profile.host_arch if profile else "x86_64"
    arch = imagebase.DEBIAN_ARCH.get(host_arch)
    if arch is None:
        raise UsageError(f"{bundle.name}: no image architecture for {host_arch}")
    serve = serve or serve_of(bundle, port=port)
    serve.check()
    if not 0 < uid < 2**31:
        raise UsageError(f"--uid {uid}: use a non-root numeric user id (1 .. 2^31-1)")
    if base_tar is not None:
        imagebase.check_tar(base_tar)
    out_root = out_root or bundle.parent / IMAGE_DIR
    app = str(info["app"])
    accelerator = str(info.get("accelerator") or (profile.accelerator if profile else "cpu"))
    return ImagePlan(bundle=bundle, info=info, out=out_root / bundle.name, app=app,
                     tag=f"{info['version']}-{platform}-{flavor}", arch=arch, accelerator=accelerator,
                     serve=serve, uid=uid, epoch=_epoch(env), install_dir=f"{INSTALL_ROOT}/{app}", suite=suite,
                     extra_packages=tuple(packages), base_tar=base_tar, cache_dir=cache_dir)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def environment(plan: ImagePlan) -> list[str]:
    """The image's ``Env``: no shell's PATH, a writable HOME and TMPDIR on the /tmp tmpfs, the
    port and a listen address for a container."""
    fixed = {"PATH": f"/{plan.install_dir}", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
             "HOST": LISTEN_HOST, **dict(plan.serve.env)}
    if plan.serve.port_env is not None:
        fixed[plan.serve.port_env] = str(plan.serve.port)
    return [f"{k}={v}" for k, v in fixed.items()]


def labels(plan: ImagePlan, packages: Mapping[str, str]) -> dict[str, str]:
    info = plan.info
    return {
        "org.opencontainers.image.title": plan.app,
        "org.opencontainers.image.version": str(info["version"]),
        "org.opencontainers.image.created": _iso(plan.epoch),
        "org.opencontainers.image.revision": str(info.get("git_commit") or ""),
        "org.opencontainers.image.base.name": f"debian:{plan.suite} ({', '.join(packages)})",
        "io.mlfreeze.platform": str(info["platform"]),
        "io.mlfreeze.flavor": str(info["flavor"]),
        "io.mlfreeze.accelerator": plan.accelerator,
        "io.mlfreeze.model-set": str(info.get("model_set") or ""),
        "io.mlfreeze.port": str(plan.serve.port),
        "io.mlfreeze.port-env": plan.serve.port_env or "",
        "io.mlfreeze.readiness": plan.serve.readiness,
        "io.mlfreeze.liveness": plan.serve.liveness,
        "io.mlfreeze.models-dir": f"/{plan.install_dir}/{MODELS}",
    }


def image_config(plan: ImagePlan, layers: Sequence[oci.Layer], packages: Mapping[str, str]) -> dict[str, Any]:
    """The OCI image config document."""
    created = _iso(plan.epoch)
    return {
        "created": created,
        "author": "mlfreeze",
        "architecture": plan.arch,
        "os": "linux",
        "config": {
            "User": f"{plan.uid}:{plan.uid}",
            "Env": environment(plan),
            "Entrypoint": [plan.executable],
            "Cmd": list(plan.serve.command),
            "WorkingDir": "/tmp",
            "ExposedPorts": {f"{plan.serve.port}/tcp": {}},
            "StopSignal": "SIGTERM",
            "Labels": labels(plan, packages),
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": created, "created_by": f"mlfreeze image: {layer.comment}"} for layer in layers],
    }


def user_files(uid: int) -> list[oci.Entry]:
    """/etc/passwd and /etc/group naming root and the app's user (no login shell), and /tmp."""
    passwd = (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
              f"app:x:{uid}:{uid}:app:/tmp:/usr/sbin/nologin\n").encode()
    group = f"root:x:0:\napp:x:{uid}:\n".encode()
    return [oci.Entry(path="etc", kind="dir"), oci.Entry(path="etc/passwd", kind="file", mode=0o644, data=passwd),
            oci.Entry(path="etc/group", kind="file", mode=0o644, data=group),
            oci.Entry(path="tmp", kind="dir", mode=0o1777)]


def _merge_base(base_entries: Sequence[oci.Entry], uid: int) -> list[oci.Entry]:
    ours = user_files(uid)
    replaced = {e.path for e in ours}
    return [e for e in base_entries if e.path not in replaced] + ours


def containerfile(plan: ImagePlan, layers: Sequence[oci.Layer], config: Mapping[str, Any]) -> str:
    """A Containerfile that builds the same file system with docker buildx / buildah from the
    layer blobs of the layout (``ADD`` unpacks a local tar.gz): the build context is the layout folder."""
    cfg = config["config"]
    lines = [
        f"# {plan.bundle.name}: the image `mlfreeze image` wrote beside this file, for teams that build with",
        f"# docker buildx:  docker buildx build -f {CONTAINERFILE} -t {plan.app}:{plan.tag} .",
        "# (run in the image layout folder; the ADDs unpack its layer blobs). The digest differs from",
        "# mlfreeze's (buildx stamps its own times); files, user, environment and entrypoint are the same.",
        "FROM scratch",
    ]
    for layer in layers:
        lines += [f"# {layer.comment}", f"ADD blobs/sha256/{layer.descriptor.digest.split(':', 1)[1]} /"]
    lines += [f"ENV {e.split('=', 1)[0]}={json.dumps(e.split('=', 1)[1])}" for e in cfg["Env"]]
    lines += [f"LABEL {k}={json.dumps(v)}" for k, v in sorted(cfg["Labels"].items())]
    lines += [f"EXPOSE {plan.serve.port}/tcp", f"USER {cfg['User']}", f"WORKDIR {cfg['WorkingDir']}",
              f"ENTRYPOINT {json.dumps(cfg['Entrypoint'])}", f"CMD {json.dumps(cfg['Cmd'])}", ""]
    return "\n".join(lines)


def build_image(plan: ImagePlan, *, audit: bool = True, log: Any = print) -> ImageResult:
    """Audit the bundle, make the base, write the three layers, the config, the manifest, the
    index, the Containerfile and image.json into ``plan.out`` (replaced as a whole: written
    under a temporary name and renamed, so a failure leaves the previous image or none)."""
    if audit:
        from mlfreeze.bundle.audit import audit as run_audit

        run_audit([plan.bundle], log=log)
    needs = imagebase.host_needs(plan.bundle, str(plan.info["platform"]))
    packages, unknown = imagebase.packages_for(needs.libraries, plan.extra_packages)
    if unknown and not plan.extra_packages:
        first = unknown[0]
        raise UsageError(f"{plan.bundle.name}: {needs.libraries[first]} needs {first} from the system, which mlfreeze "
                         f"maps to no Debian package ({len(unknown)} such: {', '.join(unknown)}); add the package "
                         "with --package PKG")
    suite = imagebase.pick_suite(needs.glibc, plan.suite)
    plan = replace(plan, suite=suite)
    log(f"image: {plan.bundle.name} needs from the system: {imagebase.summarize(needs.libraries)} "
        f"(glibc {needs.glibc[0]}.{needs.glibc[1]}) -> Debian {suite}: {', '.join(packages)}")
    if plan.base_tar is not None:
        base = plan.base_tar
    else:
        from mlfreeze.models.cache import default_cache_dir

        base = imagebase.base_tar(suite=suite, arch=plan.arch, packages=packages,
                                  cache_dir=plan.cache_dir or default_cache_dir(), epoch=plan.epoch)
    deb_versions = imagebase.dpkg_packages(base)
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan.out.with_name(f".{plan.out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        layout = oci.Layout(tmp)
        with tempfile.TemporaryDirectory(prefix="mlfreeze-image-", dir=plan.out.parent) as scratch:
            base_layer = layout.add_layer(_merge_base(list(oci.tar_entries(base, Path(scratch))), plan.uid),
                                          mtime=plan.epoch,
                                          comment=f"base: Debian {suite} {' '.join(packages)}, user {plan.uid}")
        app_layer = layout.add_layer(oci.tree_entries(plan.bundle, plan.install_dir, exclude=[MODELS, *NOT_IN_IMAGE]),
                                     mtime=plan.epoch, comment=f"bundle {plan.bundle.name} (without models/)")
        layers = [base_layer, app_layer]
        if (plan.bundle / MODELS).is_dir():
            layers.append(layout.add_layer(oci.tree_entries(plan.bundle, plan.install_dir, only=MODELS),
                                           mtime=plan.epoch, comment=f"models: set {plan.info.get('model_set')}"))
        config = image_config(plan, layers, deb_versions)
        config_desc = layout.add_json(config, oci.MEDIA_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": oci.MEDIA_MANIFEST, "config": config_desc.as_dict(),
                    "layers": [layer.descriptor.as_dict() for layer in layers],
                    "annotations": {"org.opencontainers.image.created": _iso(plan.epoch),
                                    oci.REF_NAME: plan.tag}}
        manifest_desc = layout.add_json(manifest, oci.MEDIA_MANIFEST)
        layout.write_index(manifest_desc, ref_name=plan.tag, platform={"architecture": plan.arch, "os": "linux"})
        layout.prune([manifest_desc.digest, config_desc.digest, *(layer.descriptor.digest for layer in layers)])
        (tmp / CONTAINERFILE).write_text(containerfile(plan, layers, config), encoding="utf-8")
        record = image_record(plan, manifest_desc, layers, deb_versions, needs)
        (tmp / IMAGE_JSON).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        old = plan.out.with_name(f".{plan.out.name}.old-{os.getpid()}")
        if plan.out.exists():
            plan.out.rename(old)
        tmp.rename(plan.out)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FreezeError(f"could not write the image of {plan.bundle.name} under {plan.out}: {exc}; check free "
                          "space and permissions") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = sum(layer.tar_size for layer in layers)
    log(f"image: {plan.out} {manifest_desc.digest} ({total / 1e6:.1f} MB unpacked, "
        f"{sum(layer.descriptor.size for layer in layers) / 1e6:.1f} MB compressed; tag {plan.tag})")
    return ImageResult(plan=plan, digest=manifest_desc.digest, record=record)


def image_record(plan: ImagePlan, manifest: oci.Descriptor, layers: Sequence[oci.Layer],
                 deb_versions: Mapping[str, str], needs: imagebase.HostNeeds) -> dict[str, Any]:
    """image.json: what `mlfreeze release` records in the release manifest and the image's SBOM."""
    info = plan.info
    return {
        "schema_version": SCHEMA_VERSION,
        "bundle": plan.bundle.name,
        "app": plan.app,
        "version": str(info["version"]),
        "platform": str(info["platform"]),
        "flavor": str(info["flavor"]),
        "accelerator": plan.accelerator,
        "architecture": plan.arch,
        "tag": plan.tag,
        "digest": manifest.digest,
        "manifest_size": manifest.size,
        "layers": [{"digest": layer.descriptor.digest, "size": layer.descriptor.size, "diff_id": layer.diff_id,
                    "unpacked": layer.tar_size, "what": layer.comment} for layer in layers],
        "size": {"unpacked": sum(layer.tar_size for layer in layers),
                 "compressed": sum(layer.descriptor.size for layer in layers)},
        "base": {"distribution": "debian", "suite": plan.suite, "packages": dict(deb_versions),
                 "host_libraries": sorted(needs.libraries), "glibc": f"{needs.glibc[0]}.{needs.glibc[1]}"},
        "user": plan.uid,
        "serve": {**asdict(plan.serve), "command": list(plan.serve.command), "env": dict(plan.serve.env),
                  "executable": plan.executable},
        "source_date_epoch": plan.epoch,
        "pushed": [],
    }


def read_record(layout: Path) -> dict[str, Any]:
    """image.json of an image folder; UsageError when absent or unreadable."""
    try:
        doc = json.loads((layout / IMAGE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{layout / IMAGE_JSON}: cannot read it ({exc}); run `mlfreeze image` again") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(f"{layout / IMAGE_JSON}: not a schema_version {SCHEMA_VERSION} image record; "
                         "run `mlfreeze image` again")
    return doc


def _skopeo() -> str:
    tool = shutil.which("skopeo")
    if tool is None:
        raise UsageError("skopeo is not installed (apt-get install skopeo); it copies the image layout into "
                         "container storage or a registry")
    return tool


def load_image(result: ImageResult, *, name: str | None = None) -> str:
    """Copy the layout into local container storage (what podman runs) as ``localhost/<app>:<tag>``
    (or ``name``); returns the reference. FreezeError (exit 4) when skopeo fails."""
    ref = name or f"localhost/{result.plan.app}:{result.plan.tag}"
    cmd = [_skopeo(), "copy", "--quiet", f"oci:{result.layout}:{result.plan.tag}", f"containers-storage:{ref}"]
    if proc.run(cmd, check=False) != 0:
        raise FreezeError(f"skopeo could not load {result.layout} into container storage as {ref}; see its "
                          "output above")
    return ref


def push_image(result: ImageResult, ref: str) -> str:
    """Push the layout to ``ref`` (``registry/name:tag``; ``docker://`` optional) keeping its
    digest; record ``{ref, digest}`` in image.json. The pushed digest. FreezeError when skopeo fails."""
    target = ref if "://" in ref else f"docker://{ref}"
    digest_file = result.layout.parent / f".{result.layout.name}.pushed-digest"
    cmd = [_skopeo(), "copy", "--preserve-digests", "--digestfile", str(digest_file),
           f"oci:{result.layout}:{result.plan.tag}", target]
    status = proc.run(cmd, check=False)
    pushed = digest_file.read_text(encoding="utf-8").strip() if digest_file.is_file() else ""
    digest_file.unlink(missing_ok=True)
    if status != 0 or not pushed:
        raise FreezeError(f"skopeo could not push {result.layout} to {target} (exit {status}); see its output above "
                          "(logged in? `skopeo login` or REGISTRY_AUTH_FILE)")
    if pushed != result.digest:
        raise FreezeError(f"the registry reports {pushed} for {target}, not the image's {result.digest}")
    record = read_record(result.layout)
    record["pushed"] = [p for p in record.get("pushed", []) if p.get("ref") != ref] + [{"ref": ref, "digest": pushed}]
    (result.layout / IMAGE_JSON).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return pushed


def run_line(result: ImageResult) -> str:
    """A podman command line that runs the image as it is meant to run (for the user's log); the
    serve arguments are the image's own ``Cmd``, so none follow the image name."""
    plan = result.plan
    gpu = " --device nvidia.com/gpu=all" if plan.accelerator == "cuda" else ""
    return (f"podman run --rm --read-only --tmpfs /tmp --cap-drop=ALL --user {plan.uid}{gpu} "
            f"-p 127.0.0.1:{plan.serve.port}:{plan.serve.port} localhost/{plan.app}:{plan.tag}")


def main(args: argparse.Namespace) -> int:
    """``mlfreeze image BUNDLE_DIR [--load] [--push REF]``."""
    plan = plan_image(Path(args.bundle), port=args.port, uid=args.uid, suite=args.suite, packages=args.package,
                      base_tar=Path(args.base_tar) if args.base_tar else None,
                      out_root=Path(args.out) if args.out else None)
    result = build_image(plan, log=lambda line: print(line, flush=True))
    if args.load:
        print(f"image: loaded as {load_image(result)}; run it with: {run_line(result)}", flush=True)
    if args.push:
        print(f"image: pushed {args.push}@{push_image(result, args.push)}", flush=True)
    print(json.dumps({"image": str(result.layout), "digest": result.digest, "tag": result.plan.tag}))
    return 0
