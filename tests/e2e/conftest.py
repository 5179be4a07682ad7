"""Fixtures of the end-to-end tests (all marked slow by tests/conftest.py)."""

from __future__ import annotations

from typing import AsyncIterator

import pytest
from aiohttp import web

from htap_exporter.simulator import Simulator
from tests.fakes import RunningSimulator


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    """Like the shared `simulator` fixture, but a handler still sleeping in a delay fault is
    cancelled when the exporter hangs up, and teardown does not wait 60 s for such handlers."""
    simulator = Simulator(instances=3, sessions=40)
    runner = web.AppRunner(simulator.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0,
                           handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield RunningSimulator(simulator, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()
