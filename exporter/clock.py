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
    """Spaces calls at least 1/rate seconds apart (rate <= 0: no limit)."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._next_free = 0.0

    async def wait(self) -> None:
        if self._interval == 0.0:
            return
        now = self._clock.monotonic()
        start = max(now, self._next_free)
        self._next_free = start + self._interval
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
