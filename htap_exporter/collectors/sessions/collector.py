"""The session collector: the session list of an instance, counted page by page into its families.

The top sessions (collectors.top_sessions) ride on the same walk: the counter hands each page's new
non-idle rows to a bounded selector before they are dropped, so they cost no API call, no pass of
their own over the page, and keep no rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from htap_exporter.cloud.client import ProjectClient
from htap_exporter.collectors.base import CollectorOutput
from htap_exporter.collectors.labels import LabelCache
from htap_exporter.collectors.sessions.counting import SessionCounter
from htap_exporter.collectors.sessions.families import FAMILIES, session_samples
from htap_exporter.collectors.sessions.fetch import list_sessions
from htap_exporter.collectors.sessions.pages import PageDecoder
from htap_exporter.collectors.top_sessions import TOP_SESSIONS, FingerprintCache, TopSessionLines, TopSessions
from htap_exporter.config import MetricsConfig, TopSessionsConfig
from htap_exporter.exposition.families import Family
from htap_exporter.exposition.writer import InstanceIdentity

log = logging.getLogger(__name__)

TOP_SESSIONS_FAMILY = Family(
    "htap_top_session_duration_seconds", "gauge",
    "The longest-running non-idle sessions of the instance (collectors.top_sessions.count, at least"
    " min_duration long), by how long their current command has run.")

# The riders' outputs of a poll that selected no session (shared: outputs are never changed).
NO_TOP_SESSIONS: Mapping[str, CollectorOutput] = MappingProxyType({TOP_SESSIONS: CollectorOutput({})})


@dataclass(frozen=True)
class SessionsCollector:
    """`htap_up` is this collector's: an instance is up when its session list could be read."""

    metrics: MetricsConfig
    interval: float
    # The fleet's cleaned label values, shared by every instance and kept across reloads.
    labels: LabelCache = field(compare=False, repr=False)
    top: TopSessionsConfig | None = None  # None: the top-sessions collector is off
    fingerprints: FingerprintCache = field(default_factory=FingerprintCache, compare=False, repr=False)
    name: str = "sessions"
    families: tuple[Family, ...] = FAMILIES
    reports_up: bool = True
    top_lines: TopSessionLines | None = field(default=None, compare=False, repr=False)
    # The fleet's label values, learnt from its pages (kept as long as the collector is).
    pages: PageDecoder | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.pages is None:
            object.__setattr__(self, "pages", PageDecoder(hosts=self.metrics.hosts))
        if self.top is not None and self.top_lines is None:
            object.__setattr__(self, "top_lines", TopSessionLines(
                TOP_SESSIONS_FAMILY.name, sql_mode=self.top.sql,  # type: ignore[arg-type]
                hosts=self.metrics.hosts, max_label_length=self.metrics.max_label_length,
                fingerprints=self.fingerprints, labels_of=self.labels))

    def retain(self, instance_ids: set[str]) -> None:
        """Forget the top sessions of instances no longer polled."""
        if self.top_lines is not None:
            self.top_lines.retain(instance_ids)

    @property
    def riders(self) -> tuple[str, ...]:
        return (TOP_SESSIONS,) if self.top is not None else ()

    async def collect(self, instance: InstanceIdentity, client: ProjectClient) -> CollectorOutput:
        top = self.top
        selector = None if top is None else TopSessions(top.count, top.min_duration, self.metrics.idle_commands)
        counter = SessionCounter(self.metrics, labels=self.labels,
                                 active_rows=selector)
        result = await list_sessions(client, instance.instance_id, counter,
                                     with_sql=top is not None and top.sql != "none", decoder=self.pages)
        stats = result.stats
        if result.skipped_rows or stats.rows_without_duration:
            log.debug("rows left out", extra={
                "instance_id": instance.instance_id, "sessions": stats.sessions, "pages": result.pages,
                "rows_not_objects": result.skipped_rows, "rows_without_duration": stats.rows_without_duration})
        samples = session_samples(instance.writer, stats)
        if selector is None or self.top_lines is None:
            return CollectorOutput(samples, sessions=stats.sessions)
        if not len(selector):
            # As a rule on an instance without long queries: the same empty output every poll.
            return CollectorOutput(samples, stats.sessions, (), NO_TOP_SESSIONS)
        longest, lines = self.top_lines.render(instance.writer, *selector.selected())
        return CollectorOutput(samples, stats.sessions, longest,
                               {TOP_SESSIONS: CollectorOutput({TOP_SESSIONS_FAMILY.name: lines})})

