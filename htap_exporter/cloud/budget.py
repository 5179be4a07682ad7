"""One API budget per project: a token bucket shared by polling and discovery, and the poll
cadence it can sustain.

`api_rate_limit` caps the requests a project's credentials send to the cloud API (IAM token
requests are not counted: they go to another service, once per project per renewal). When the
fleet needs more than the budget at the configured interval, every instance's interval is
stretched by the same factor, so the whole fleet is polled evenly a little less often instead of
the instances at the end of the queue waiting ever longer and timing out.
"""

from __future__ import annotations

import math
from typing import Iterable

from htap_exporter.clock import Clock, RateLimiter

# Polls plan for this share of the rate; the rest absorbs retries, pages that grow between two
# polls and the bursts of a discovery refresh.
POLL_SHARE = 0.9


class ApiBudget(RateLimiter):
    """A token bucket of `rate` requests/s with a burst of one second's worth, that also knows
    how many requests a round of polls costs (pages per instance, from the last poll of each)."""

    def __init__(self, rate: float, clock: Clock) -> None:
        super().__init__(rate, clock, burst=max(1, math.ceil(rate)))
        self.rate = rate
        self._pages: dict[str, int] = {}
        self._pages_total = 0
        self._discovery_rate = 0.0
        self._collector_rate = 0.0

    def expect(self, instance_ids: Iterable[str]) -> None:
        """The instances polled with this budget; one not polled yet counts as one page."""
        wanted = set(instance_ids)
        for instance_id in [i for i in self._pages if i not in wanted]:
            self._pages_total -= self._pages.pop(instance_id)
        for instance_id in wanted:
            if instance_id not in self._pages:
                self._pages[instance_id] = 1
                self._pages_total += 1

    def record_poll(self, instance_id: str, pages: int) -> None:
        if instance_id in self._pages:
            pages = max(1, pages)
            self._pages_total += pages - self._pages[instance_id]
            self._pages[instance_id] = pages

    def record_discovery(self, requests: int, refresh_interval: float) -> None:
        self._discovery_rate = requests / refresh_interval

    def expect_collectors(self, requests_per_second: float) -> None:
        """What the collectors beyond the session list plan to spend (requests/s, all instances)."""
        self._collector_rate = requests_per_second

    def poll_interval(self, configured: float) -> float:
        """The configured interval, or longer when a round of session polls and the collectors'
        runs together do not fit the poll share of the budget."""
        usable = max(self.rate * POLL_SHARE - self._discovery_rate, self.rate * (1 - POLL_SHARE))
        return max(configured, (self._pages_total + self._collector_rate * configured) / usable)

    def stretch(self, poll_interval: float) -> float:
        """The factor every interval of the project is stretched by (1: as configured), the
        collectors' with the session poll's, so that each keeps its share of the budget."""
        return self.poll_interval(poll_interval) / poll_interval
