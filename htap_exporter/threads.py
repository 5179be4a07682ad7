"""Worker threads for bulk copies (joining and sending big bodies), kept out of polling's way."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")

BACKGROUND_NICE = 10


def background_priority() -> None:
    """Run this thread at nice 10 at least (Linux niceness is per thread): on a machine with few
    cores, a thread copying a big body must yield the CPU to the event loop that polls."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, max(BACKGROUND_NICE, os.getpriority(os.PRIO_PROCESS, 0)))
    except (AttributeError, OSError):  # not Linux, or not allowed: the same work at normal priority
        pass


def background_executor(workers: int, name: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name, initializer=background_priority)


def in_daemon_thread(function: Callable[[], T], name: str) -> "asyncio.Future[T]":
    """`function()` in a new daemon thread; the future (of the running loop) gets its outcome.

    For work that can take long and cannot be interrupted (a bcrypt check, reading a file that
    may be hostile): unlike the default executor, nothing waits for a daemon thread, not
    asyncio.run's executor shutdown nor the interpreter's exit, so SIGTERM always ends the process."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(outcome: Any, failed: bool) -> None:
        if not future.done():
            (future.set_exception if failed else future.set_result)(outcome)

    def run() -> None:
        outcome: Any
        try:
            outcome, failed = function(), False
        except BaseException as problem:  # noqa: B036 (handed to the awaiting task)
            outcome, failed = problem, True
        try:
            loop.call_soon_threadsafe(deliver, outcome, failed)
        except RuntimeError:  # the loop has closed: nobody waits any more
            pass

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
