"""Two tiers: unit tests (no network, no subprocess) and integration tests.

Everything under tests/integration/ is marked ``integration`` automatically. Unit tests get
an autouse guard that makes socket connections and subprocesses fail loudly, so a unit test
that quietly reaches the outside world cannot pass.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from builder._checkout import activate

ROOT = Path(__file__).resolve().parents[1]
activate()  # a bare checkout resolves mlfreeze.* like an installed one; an install wins


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)


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

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)


@pytest.fixture
def root() -> Path:
    return ROOT
