"""Real lite freezes of a tiny stdlib-only app, shared by the integration tests that need one
(freeze, audit, the example app's lite bundle, the updater). Imported by name: tests/ is on the
test path, as for release_bundles and demo_models."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfreeze import hostinfo
from mlfreeze.bundle.freeze import AppConfig, FreezeRequest, freeze_bundle
from mlfreeze.platforms.profiles import Profile, all_profiles


def host_profile(*, cpu_only: bool = False) -> Profile:
    """The first profile that builds on this host (a CPU one when ``cpu_only``); skips the test when none."""
    host = hostinfo.current()
    for p in all_profiles().values():
        if (p.host_os, p.host_arch) == (host.os, host.arch) and (not cpu_only or p.accelerator == "cpu"):
            return p
    pytest.skip(f"no {'CPU ' if cpu_only else ''}profile builds on {host}")


def tiny_app(root: Path, source: str, *, version: str, update_root: Path | None = None) -> AppConfig:
    """``root/tiny.py`` holding ``source``, as the project config of an app named ``tiny``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "tiny.py").write_text(source)
    return AppConfig(app="tiny", entry=root / "tiny.py", version=version, model_set="demo",
                     sources=(root / "tiny.py",), pathex=(root,), update_root=update_root)


def freeze_lite(root: Path, app: AppConfig, *, profile: Profile | None = None,
                dist_dir: Path | None = None) -> tuple[Path, dict]:
    """Freeze ``app``'s lite bundle into ``dist_dir`` (default ``root/dist``), work in ``root/build``;
    returns the bundle and the keyword arguments, for a rebuild with the same inputs."""
    kw = dict(profile=profile or host_profile(), flavor="lite", root=root, app=app,
              dist_dir=dist_dir or root / "dist", work_dir=root / "build")
    return freeze_bundle(FreezeRequest(**kw)), kw
