"""Time as a dependency, so that schedules and back-off can be tested without sleeping."""

from __future__ import annotations

import asyncio
import time


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
