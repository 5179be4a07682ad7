"""Shared fixtures: a simulator on loopback (port 0), mocked HTTP, a fake clock, certificates.

Fixtures used by one folder only live in that folder's conftest.py. Everything under tests/e2e and
tests/deploy is marked `slow` here, so `pytest -m "not slow"` is the quick loop (`python3 dev.py quick`).
"""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Iterator

import aiohttp
import pytest
from aioresponses import aioresponses

from htap_exporter.simulator import Simulator, start
from tests.examples import load_profile
from tests.fakes import FakeClock, RunningSimulator
from tests.webtls import Pki

TESTS = Path(__file__).resolve().parent
SLOW_FOLDERS = (TESTS / "e2e", TESTS / "deploy")

# The property tests' profile (HYPOTHESIS_PROFILE: ci in .ci/run, quick in the quick loop), loaded
# before any test module asks how many examples it draws.
load_profile()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Processes, real servers and linters: every test under tests/e2e and tests/deploy is slow."""
    for item in items:
        if any(item.path.is_relative_to(folder) for folder in SLOW_FOLDERS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    sim = Simulator(instances=3, sessions=40)
    runner, base_url = await start(sim)
    try:
        yield RunningSimulator(sim, base_url)
    finally:
        await runner.cleanup()


@pytest.fixture
def mock() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def observed() -> list:
    return []


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA and a server certificate in tmp_path, for the web config's TLS."""
    return Pki.create(tmp_path)
