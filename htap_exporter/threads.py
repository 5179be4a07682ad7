"""Worker threads for bulk copies (joining and sending big bodies), kept out of polling's way."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

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
