"""Every collector the exporter has, and the ones a config enables.

The one place that knows the list: the scheduler receives the enabled collectors, the store the
families of all of them (a family no instance has is left out of a body).
"""

from __future__ import annotations

from htap_exporter.collectors.base import Collector
from htap_exporter.collectors.labels import LabelCache
from htap_exporter.collectors.sessions.collector import SessionsCollector
from htap_exporter.collectors.sessions.families import FAMILIES as SESSION_FAMILIES
from htap_exporter.config import Config
from htap_exporter.exposition.families import Family


def all_families() -> tuple[Family, ...]:
    """The families of every collector, enabled or not, in the order a body lists them."""
    return SESSION_FAMILIES


class CollectorSet:
    """Builds the enabled collectors of a config; keeps what they share across reloads."""

    def __init__(self) -> None:
        self._labels = LabelCache()

    def label_cache(self, max_length: int) -> LabelCache:
        """The fleet's cleaned label values, for the config's label length."""
        if self._labels.max_length != max_length:
            self._labels = LabelCache(max_length)
        return self._labels

    def enabled(self, config: Config) -> tuple[Collector, ...]:
        labels = self.label_cache(config.metrics.max_label_length)
        return (SessionsCollector(config.metrics, config.poll.interval, labels),)
