"""Shared fixtures: a simulator on loopback, port 0."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from exporter.simulator import Simulator, start


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
