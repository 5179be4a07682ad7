"""Time as a dependency, so that schedules and back-off can be tested without sleeping."""

from __future__ import annotations

import random

import asyncio
import heapq
import time
from types import TracebackType
from typing import Any, Callable, Protocol


# Every repeated wait (back-off, a refresh) varies by this much either way, so that loops started
# together drift apart instead of hitting the API in step.
JITTER = 0.1


def jittered(seconds: float, rng: random.Random) -> float:
    return seconds * rng.uniform(1 - JITTER, 1 + JITTER)


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
    """A token bucket: `burst` calls may go at once, then one every 1/rate seconds (rate <= 0:
    no limit). Each caller reserves its slot when it arrives, so waiters are served in order and
    none is overtaken forever (a generic cell rate algorithm: one number of state, no timer).

    The one limiter of the exporter: the API budget waits for its slot (`wait`), the web config's
    `rate_limit` refuses a request that finds none (`allow`)."""

    def __init__(self, rate: float, clock: Clock, burst: int = 1) -> None:
        self._clock = clock
        self._theoretical_arrival = 0.0
        self._set_interval(1.0 / rate if rate > 0 else 0.0, burst)

    @classmethod
    def one_per(cls, interval: float, clock: Clock, burst: int = 1) -> RateLimiter:
        """On average one call per `interval` seconds (> 0), as the web config gives its rate."""
        limiter = RateLimiter(0.0, clock)
        limiter._set_interval(interval, burst)
        return limiter

    def _set_interval(self, interval: float, burst: int) -> None:
        self._interval = interval
        self._tolerance = max(0, burst - 1) * interval

    def allow(self) -> bool:
        """Take a slot if one is free now; False (and nothing taken) when the caller would wait."""
        if self._interval == 0.0:
            return True
        now = self._clock.monotonic()
        arrival = max(now, self._theoretical_arrival)
        if arrival - self._tolerance > now:
            return False
        self._theoretical_arrival = arrival + self._interval
        return True

    async def wait(self) -> None:
        if self._interval == 0.0:
            return
        now = self._clock.monotonic()
        arrival = max(now, self._theoretical_arrival)
        start = max(now, arrival - self._tolerance)
        self._theoretical_arrival = arrival + self._interval
        if start > now:
            await self._clock.sleep(start - now)


class DeadlineQueue:
    """Many deadlines on one timer: the loop holds a single timer for the earliest live deadline.

    A poll registers a deadline three intervals away and almost always ends long before it; with a
    loop timer per poll, 10,000 instances kept ~30,000 cancelled timers in the event loop's heap,
    each new one paying Python-level comparisons to get in. Here a deadline is a list in our own
    heap (compared in C), a cancelled one is only marked, and the loop timer moves only when the
    earliest live deadline changes."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[list[Any]] = []  # [expires_at, sequence, callback or None when cancelled]
        self._sequence = 0
        self._timer: Timer | None = None
        self._armed_at: float | None = None

    def add(self, seconds: float, callback: Callable[[], None]) -> Timer:
        expires_at = self._clock.monotonic() + max(0.0, seconds)
        self._sequence += 1
        entry: list[Any] = [expires_at, self._sequence, callback]
        heapq.heappush(self._heap, entry)
        if self._armed_at is None or expires_at < self._armed_at:
            self._arm(expires_at)
        return _QueuedDeadline(entry)

    def __len__(self) -> int:
        return sum(1 for entry in self._heap if entry[2] is not None)

    def _arm(self, expires_at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = expires_at
        self._timer = self._clock.call_later(expires_at - self._clock.monotonic(), self._fire)

    def _fire(self) -> None:
        self._timer = self._armed_at = None
        heap = self._heap
        now = self._clock.monotonic()
        while heap and (heap[0][2] is None or heap[0][0] <= now):
            callback = heapq.heappop(heap)[2]
            if callback is not None:
                callback()
        if heap:
            self._arm(heap[0][0])


class _QueuedDeadline:
    __slots__ = ("_entry",)

    def __init__(self, entry: list[Any]) -> None:
        self._entry = entry

    def cancel(self) -> None:
        self._entry[2] = None


class Deadline:
    """`async with Deadline(clock, seconds):` raises TimeoutError once `seconds` of `clock` time have
    passed, cancelling the body, like asyncio.timeout: one timer, no extra task, so a poll costs the
    event loop no more than its own awaits. Unlike asyncio.timeout it follows the injected clock,
    so tests drive it in virtual time."""

    def __init__(self, clock: Clock, seconds: float, queue: DeadlineQueue | None = None) -> None:
        self._clock = clock
        self._seconds = seconds
        self._queue = queue
        self._task: asyncio.Task[Any] | None = None
        self._timer: Timer | None = None
        self._cancelling = 0
        self.expired = False

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        assert task is not None, "Deadline is used inside a task"
        self._task = task
        self._cancelling = task.cancelling()
        if self._queue is not None:
            self._timer = self._queue.add(self._seconds, self._expire)
        else:
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
