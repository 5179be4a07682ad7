"""Shared fixtures: a simulator on loopback (port 0), mocked HTTP, a fake clock."""

from __future__ import annotations

from typing import AsyncIterator, Iterator

import aiohttp
import pytest
from aioresponses import aioresponses

from htap_exporter.simulator import Simulator, start
from tests.fakes import FakeClock


class RunningSimulator:
    def __init__(self, simulator: Simulator, base_url: str) -> None:
        self.sim = simulator
        self.base_url = base_url


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
