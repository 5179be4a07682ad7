"""Every collector the exporter has, and the ones a config enables.

The one place that knows the list: the scheduler receives the enabled collectors, the store the
families of all of them (a family no instance has is left out of a body).
"""

from __future__ import annotations

from typing import Callable

from htap_exporter.collectors import nodes, query_queue, replication
from htap_exporter.collectors.base import Collector, declare
from htap_exporter.collectors.labels import LabelCache
from htap_exporter.collectors.top_sessions import FingerprintCache
from htap_exporter.collectors.sessions.collector import TOP_SESSIONS_FAMILY, SessionsCollector
from htap_exporter.collectors.sessions.families import FAMILIES as SESSION_FAMILIES
from htap_exporter.config import Config
from htap_exporter.exposition.families import Family


def all_families() -> tuple[Family, ...]:
    """The families of every collector, enabled or not, in the order a body lists them."""
    return (SESSION_FAMILIES + (TOP_SESSIONS_FAMILY,) + declare(replication.FAMILIES) + declare(nodes.FAMILIES)
            + declare(query_queue.FAMILIES))


class CollectorSet:
    """Builds the enabled collectors of a config; keeps what they share across reloads."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._labels = LabelCache()
        self._now = now
        self._made: dict[str, Collector] = {}
        self._fingerprints = FingerprintCache()  # digests of long-running statements, across reloads

    def label_cache(self, max_length: int) -> LabelCache:
        """The fleet's cleaned label values, for the config's label length."""
        if self._labels.max_length != max_length:
            self._labels = LabelCache(max_length)
        return self._labels

    def enabled(self, config: Config) -> tuple[Collector, ...]:
        labels = self.label_cache(config.metrics.max_label_length)
        settings = config.collectors
        max_length = config.metrics.max_label_length
        top = settings.top_sessions if settings.top_sessions.enabled else None
        enabled: list[Collector] = [self._keep(SessionsCollector(config.metrics, config.poll.interval, labels, top,
                                                                 self._fingerprints))]
        if settings.replication.enabled:
            enabled.append(self._keep(replication.ReplicationCollector(
                settings.replication.interval, settings.replication.max_tasks, max_length, clock=self._now)))
        if settings.nodes.enabled:
            enabled.append(self._keep(nodes.NodesCollector(settings.nodes.interval, max_length)))
        if settings.query_queue.enabled:
            enabled.append(self._keep(query_queue.QueryQueueCollector(settings.query_queue.interval)))
        polled = {instance.id for project in config.projects for instance in project.instances}
        for collector in enabled:
            if isinstance(collector, (SessionsCollector, replication.ReplicationCollector, nodes.NodesCollector)):
                collector.retain(polled)
        return tuple(enabled)

    def _keep(self, collector: Collector) -> Collector:
        """The collector made for the previous config when its settings are the same: it holds what
        it learnt (when tasks last changed, its top sessions' lines), and the scheduler keeps its loops."""
        previous = self._made.get(collector.name)
        if previous == collector:
            return previous
        self._made[collector.name] = collector
        return collector
