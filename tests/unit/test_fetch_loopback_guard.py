"""The ``loopback`` exemption of the unit tier lets a test reach 127.0.0.1 and nothing else."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from fetch_servers import FaultServer


@pytest.mark.loopback
def test_loopback_test_reaches_its_own_server(server: FaultServer) -> None:
    import urllib.request

    with urllib.request.urlopen(server.add("/x", b"hello")) as r:
        assert r.read() == b"hello"


@pytest.mark.loopback
@pytest.mark.parametrize("address", [("10.0.0.1", 80), ("192.0.2.1", 443), ("8.8.8.8", 53)])
def test_loopback_test_cannot_connect_elsewhere(address: tuple[str, int]) -> None:
    with socket.socket() as s, pytest.raises(RuntimeError, match="only to 127.0.0.1"):
        s.connect(address)
    with socket.socket() as s, pytest.raises(RuntimeError, match="only to 127.0.0.1"):
        s.connect_ex(address)


@pytest.mark.loopback
def test_loopback_test_cannot_resolve_names_or_start_processes() -> None:
    with pytest.raises(RuntimeError, match="may not resolve 'example.com'"):
        socket.getaddrinfo("example.com", 443)
    assert socket.getaddrinfo("localhost", 80)  # loopback by name is fine
    with pytest.raises(RuntimeError, match="may not start subprocesses"):
        subprocess.run([sys.executable, "-c", "pass"])


def test_plain_unit_test_cannot_reach_even_loopback(server: FaultServer) -> None:
    with socket.socket() as s, pytest.raises(RuntimeError, match="may not open network connections"):
        s.connect(("127.0.0.1", server.port))
