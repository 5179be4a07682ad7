"""The gauge histogram of the active (non-idle) sessions' durations, for one poll."""

from __future__ import annotations

import bisect
import itertools
import math
from typing import Sequence


class ActiveHistogram:
    """Counts per bucket (not cumulative until read), sum and count; the last bound is +Inf."""

    __slots__ = ("bounds", "_counts", "sum", "count")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds) + (math.inf,)
        self._counts = [0] * len(self.bounds)
        self.sum: float | int = 0
        self.count = 0

    def add(self, durations: list[float | int]) -> None:
        """Usable durations (finite, non-negative), sorted here once: each bucket's count is then
        found by bisection (a dozen bounds), not by a lookup per session."""
        durations.sort()
        counts = self._counts
        below = 0
        for index, bound in enumerate(self.bounds[:-1]):
            upto = bisect.bisect_right(durations, bound)  # durations <= bound, as `le` means
            counts[index] += upto - below
            below = upto
        counts[-1] += len(durations) - below
        self.count += len(durations)
        total = sum(durations)
        if type(total) is int and type(self.sum) is int:
            self.sum += total  # whole seconds, the usual page: exact as integers
            return
        try:
            self.sum = math.fsum((self.sum, *durations))
        except OverflowError:  # durations near the float maximum ("1e308" twice): the sum is +Inf
            self.sum = math.inf

    def cumulative(self) -> tuple[tuple[float, int], ...]:
        """(upper bound, sessions at or below it) per bucket, as the exposition writes them."""
        return tuple(zip(self.bounds, itertools.accumulate(self._counts), strict=True))
