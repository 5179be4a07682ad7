"""Shared fixtures: a simulator on loopback (port 0), mocked HTTP, a fake clock, certificates.

Fixtures used by one folder only live in that folder's conftest.py. Everything under tests/e2e and
tests/deploy is marked `slow` here, so `pytest -m "not slow"` is the quick loop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import AsyncIterator, Iterator

import aiohttp
import pytest
from aioresponses import aioresponses
from hypothesis import settings

from htap_exporter.simulator import Simulator, start
from tests.fakes import FakeClock, RunningSimulator
from tests.webtls import Pki

TESTS = Path(__file__).resolve().parent
SLOW_FOLDERS = (TESTS / "e2e", TESTS / "deploy")

# CI (.ci/run sets HYPOTHESIS_PROFILE=ci) draws the same examples every run: a fresh clone must not
# fail on an example that only one run happened to draw. A developer's runs draw new ones, and keep
# those that failed in .hypothesis/ until they pass.
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


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
