"""Two tiers: unit tests (no network, no subprocess) and integration tests.

Everything under tests/integration/ is marked ``integration`` automatically. Unit tests get
an autouse guard that makes socket connections and subprocesses fail loudly, so a unit test
that quietly reaches the outside world cannot pass.

One deliberate exemption: a unit test marked ``loopback`` may connect to 127.0.0.0/8 and ::1
(servers it starts itself in threads, tests/fetch_servers.py) and resolve only ``localhost``
and loopback literals; any other address, any other name lookup and every subprocess still fail.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["fetch_servers"]  # the `server` and `tls_server` fixtures of the fetch tests


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--server-bundle", default=None, metavar="DIR",
                     help="a slim or full bundle of examples/search_server for tests/integration/test_image_podman.py "
                          "(.ci/run passes it after building the example; without it those tests are deselected)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "loopback: a unit test that may connect to servers it runs on 127.0.0.1 "
                                       "(and nothing else)")
    config.addinivalue_line("markers", "server_image: needs --server-bundle (the example server's bundle)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)
    if config.getoption("--server-bundle") is None:
        # the image of the example server's bundle: .ci/run runs them once it has built the example
        deselected = [item for item in items if item.get_closest_marker("server_image")]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not item.get_closest_marker("server_image")]


class _Forbidden(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _unit_tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("integration"):
        return

    def no_network(*args: object, **kwargs: object) -> None:
        raise _Forbidden("unit tests may not open network connections (mark the test integration)")

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise _Forbidden("unit tests may not start subprocesses (mark the test integration)")

    if request.node.get_closest_marker("loopback"):
        _allow_loopback_only(monkeypatch)
    else:
        monkeypatch.setattr(socket.socket, "connect", no_network)
        monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)


def _is_loopback_literal(host: object) -> bool:
    try:
        return ipaddress.ip_address(str(host).strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def _allow_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def check(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not (
                isinstance(address, tuple) and _is_loopback_literal(address[0])):
            raise _Forbidden(f"a loopback test may connect only to 127.0.0.1/::1, not {address!r}")

    def guarded_connect(sock: socket.socket, address: object) -> None:
        check(sock, address)
        connect(sock, address)  # type: ignore[arg-type]

    def guarded_connect_ex(sock: socket.socket, address: object) -> int:
        check(sock, address)
        return connect_ex(sock, address)  # type: ignore[arg-type]

    def guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host is not None and str(host).lower() != "localhost" and not _is_loopback_literal(host):
            raise _Forbidden(f"a loopback test may not resolve {host!r}")
        return getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


@pytest.fixture
def root() -> Path:
    return ROOT
