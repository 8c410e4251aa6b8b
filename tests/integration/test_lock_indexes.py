"""Locks find what pip finds across several indexes, and a failed resolve says uv's own reason.

Two real PEP 503 indexes on disk (``file://``, as this machine's pip is configured) or served on
127.0.0.1 (as a mirror is), handed to the real uv through pip's own configuration, read back with
``pip config list``: a partial mirror in ``PIP_EXTRA_INDEX_URL`` (the index uv searches first)
and the complete index in ``PIP_INDEX_URL`` (searched second):

- ``demo-new>=2``: 1.0 on the mirror, 2.0 only on the second index;
- ``demo-plat==1.0``: the mirror has it only as a wheel for a newer manylinux than the lock's
  target (the issue's partial mirror), the second index as a pure-Python wheel.

pip takes both from the second index; uv's default first-index strategy stops at the first index
that knows the name and fails, which the last test shows (so the passing resolve can fail).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import os
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlfreeze.errors import FreezeError
from mlfreeze.project import lock


def _wheel(folder: Path, name: str, version: str, tag: str) -> Path:
    """A minimal valid wheel of one module, ``<name>-<version>-<tag>.whl``."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}"
    path = folder / f"{dist}-{tag}.whl"
    files = {f"{module}.py": f"VERSION = {version!r}\n",
             f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}.dist-info/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"}
    record = []
    with zipfile.ZipFile(path, "w") as zf:
        for arc, text in files.items():
            zf.writestr(arc, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(text.encode())}")
        zf.writestr(f"{dist}.dist-info/RECORD", "\n".join([*record, f"{dist}.dist-info/RECORD,,"]) + "\n")
    return path


def _index(root: Path, wheels: dict[str, list[tuple[str, str]]]) -> Path:
    """A PEP 503 ``simple/`` tree under ``root`` with the given wheels (name -> [(version, tag)])."""
    simple = root / "simple"
    for name, builds in wheels.items():
        folder = simple / name
        folder.mkdir(parents=True)
        links = []
        for version, tag in builds:
            wheel = _wheel(folder, name, version, tag)
            sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
            links.append(f'<a href="{wheel.name}#sha256={sha}">{wheel.name}</a><br/>')
        (folder / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    (simple / "index.html").write_text("<!DOCTYPE html><html><body>\n"
                                       + "".join(f'<a href="{n}/">{n}</a>\n' for n in wheels) + "</body></html>\n")
    return simple


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("indexes")
    first = _index(root / "first", {"demo-new": [("1.0", "py3-none-any")],
                                    "demo-plat": [("1.0", "py3-none-manylinux_2_99_x86_64")]})
    second = _index(root / "second", {"demo-new": [("2.0", "py3-none-any")],
                                      "demo-plat": [("1.0", "py3-none-any")]})
    return first, second


@pytest.fixture(scope="module")
def served(indexes: tuple[Path, Path]) -> Iterator[tuple[str, str]]:
    """Both indexes over HTTP on 127.0.0.1 (one server, two folders)."""
    top = indexes[0].parents[1]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(top))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield f"{base}/first/simple/", f"{base}/second/simple/"
    server.shutdown()


def _inputs(*requirements: str) -> lock.LockInputs:
    return lock.LockInputs(profile="linux-cuda", variant="", requirements=requirements, overrides=(),
                           python="3.12", python_platform="x86_64-manylinux_2_28", torch_index="")


@pytest.fixture
def pip_env(monkeypatch: pytest.MonkeyPatch):
    """pip configured with exactly the given index-url and extra-index-url (no config file)."""
    for key in list(os.environ):
        if key.startswith(("PIP_", "UV_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("UV_NO_CONFIG", "1")

    def configure(first: str, second: str) -> str:
        """``first``: the partial mirror (an extra index, which uv searches first); ``second``: the index."""
        monkeypatch.setenv("PIP_EXTRA_INDEX_URL", first)
        monkeypatch.setenv("PIP_INDEX_URL", second)
        listed = lock.pip_config()
        assert first in listed and second in listed, listed  # pip itself reports both
        return listed

    return configure


def _pins(body: str) -> dict[str, str]:
    return {name: version for name, version in lock.pinned(body).items() if name.startswith("demo-")}


def test_a_wheel_only_on_the_second_file_index_is_found(indexes, pip_env):
    first, second = (p.as_uri() for p in indexes)
    body = lock.resolve(_inputs("demo-new>=2", "demo-plat==1.0"), pip_config=pip_env(first, second), what="test")
    assert _pins(body) == {"demo-new": "2.0", "demo-plat": "1.0"}
    plat_any = next((indexes[1] / "demo-plat").glob("*.whl"))
    assert hashlib.sha256(plat_any.read_bytes()).hexdigest() in body  # the wheel pip would install


def test_a_wheel_only_on_the_second_served_index_is_found(served, pip_env):
    body = lock.resolve(_inputs("demo-new>=2", "demo-plat==1.0"), pip_config=pip_env(*served), what="test")
    assert _pins(body) == {"demo-new": "2.0", "demo-plat": "1.0"}


def test_a_failed_resolve_says_which_package_and_constraint(indexes, pip_env, capfd):
    first, second = (p.as_uri() for p in indexes)
    with pytest.raises(FreezeError) as err:
        lock.resolve(_inputs("demo-new>=3"), pip_config=pip_env(first, second), what="the test lock")
    message = err.value.message
    assert "\n" not in message and message.startswith("uv could not resolve the test lock for Python 3.12: ")
    assert re.search(r"demo-new.*>=3", message) and "unsatisfiable" in message
    assert "reachable" not in message
    printed = capfd.readouterr().err
    assert "No solution found" in printed  # the resolver's own output above the one-line reason


def test_first_index_strategy_fails_where_pip_would_install(indexes, pip_env, monkeypatch):
    """What the lock did before: uv's default strategy. The same resolve fails, naming the package."""
    first, second = (p.as_uri() for p in indexes)
    config = pip_env(first, second)
    monkeypatch.setenv(lock.INDEX_STRATEGY_ENV, "first-index")
    for requirement in ("demo-new>=2", "demo-plat==1.0"):
        with pytest.raises(FreezeError) as err:
            lock.resolve(_inputs(requirement), pip_config=config, what="test")
        assert requirement.split("=")[0].rstrip(">") in err.value.message


def test_a_relock_keeps_the_previous_pins_its_inputs_allow(indexes, pip_env):
    """uv prefers the pins of the lock being replaced (write_lock hands it over): a relock after an
    unrelated input changed moves nothing; an input that excludes a pin moves it; none: the newest."""
    config = pip_env(*(p.as_uri() for p in indexes))
    old = lock.resolve(_inputs("demo-new<2"), pip_config=config, what="test")
    assert _pins(old) == {"demo-new": "1.0"}
    assert _pins(lock.resolve(_inputs("demo-new"), pip_config=config, what="test")) == {"demo-new": "2.0"}
    kept = lock.resolve(_inputs("demo-new"), pip_config=config, what="test", previous=old)
    assert _pins(kept) == {"demo-new": "1.0"}  # still allowed: kept
    forced = lock.resolve(_inputs("demo-new>=2"), pip_config=config, what="test", previous=old)
    assert _pins(forced) == {"demo-new": "2.0"}  # excluded now: moved
