"""Time as a dependency, so that schedules and back-off can be tested without sleeping."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, Callable, Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock:
    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, seconds), callback)

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


class Deadline:
    """`async with Deadline(clock, seconds):` raises TimeoutError once `seconds` of `clock` time have
    passed, cancelling the body, like asyncio.timeout: one timer, no extra task, so a poll costs the
    event loop no more than its own awaits. Unlike asyncio.timeout it follows the injected clock,
    so tests drive it in virtual time."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._task: asyncio.Task[Any] | None = None
        self._timer: Timer | None = None
        self._cancelling = 0
        self.expired = False

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        assert task is not None, "Deadline is used inside a task"
        self._task = task
        self._cancelling = task.cancelling()
        self._timer = self._clock.call_later(self._seconds, self._expire)
        return self

    def _expire(self) -> None:
        assert self._task is not None
        self.expired = True
        self._task.cancel()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        assert self._task is not None and self._timer is not None
        self._timer.cancel()
        if self.expired:
            # Only our own cancellation becomes a timeout; a stop (SIGTERM) stays a cancellation.
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
