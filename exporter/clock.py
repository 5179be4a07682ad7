"""Time as a dependency, so that schedules and back-off can be tested without sleeping."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, TypeVar

T = TypeVar("T")


class Clock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class RateLimiter:
    """A token bucket: `burst` calls may go at once, then one every 1/rate seconds (rate <= 0:
    no limit). Each caller reserves its slot when it arrives, so waiters are served in order and
    none is overtaken forever (a generic cell rate algorithm: one number of state, no timer)."""

    def __init__(self, rate: float, clock: Clock, burst: int = 1) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._tolerance = max(0, burst - 1) * self._interval
        self._theoretical_arrival = 0.0

    async def wait(self) -> None:
        if self._interval == 0.0:
            return
        now = self._clock.monotonic()
        arrival = max(now, self._theoretical_arrival)
        start = max(now, arrival - self._tolerance)
        self._theoretical_arrival = arrival + self._interval
        if start > now:
            await self._clock.sleep(start - now)


async def run_within(clock: Clock, seconds: float, work: Awaitable[T]) -> T:
    """The result of `work`, or TimeoutError once `seconds` of `clock` time have passed (`work` is
    then cancelled). Unlike asyncio.timeout, it follows the injected clock, so tests drive it."""
    task = asyncio.ensure_future(work)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise TimeoutError
    finally:
        task.cancel()
        timer.cancel()
        await asyncio.gather(task, timer, return_exceptions=True)
