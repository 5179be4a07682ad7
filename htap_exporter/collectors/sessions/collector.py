"""The session collector: the session list of an instance, counted page by page into its families."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from htap_exporter.cloud.client import ProjectClient
from htap_exporter.collectors.base import CollectorOutput
from htap_exporter.collectors.labels import LabelCache
from htap_exporter.collectors.sessions.counting import SessionCounter
from htap_exporter.collectors.sessions.families import FAMILIES, session_samples
from htap_exporter.collectors.sessions.fetch import list_sessions
from htap_exporter.config import MetricsConfig
from htap_exporter.exposition.families import Family
from htap_exporter.exposition.writer import InstanceIdentity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionsCollector:
    """`htap_up` is this collector's: an instance is up when its session list could be read."""

    metrics: MetricsConfig
    interval: float
    # The fleet's cleaned label values, shared by every instance and kept across reloads.
    labels: LabelCache = field(compare=False, repr=False)
    name: str = "sessions"
    families: tuple[Family, ...] = FAMILIES
    riders: tuple[str, ...] = ()
    reports_up: bool = True

    async def collect(self, instance: InstanceIdentity, client: ProjectClient) -> CollectorOutput:
        counter = SessionCounter(self.metrics, labels=self.labels)
        result = await list_sessions(client, instance.instance_id, counter)
        stats = result.stats
        if result.skipped_rows or stats.rows_without_duration:
            log.debug("rows left out", extra={
                "instance_id": instance.instance_id, "sessions": stats.sessions, "pages": result.pages,
                "rows_not_objects": result.skipped_rows, "rows_without_duration": stats.rows_without_duration})
        return CollectorOutput(session_samples(instance.writer, stats), sessions=stats.sessions)
