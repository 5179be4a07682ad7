"""The exporter's own metrics (process, build, reloads, API requests), in a registry of their own."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector,
                               ProcessCollector, generate_latest)
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector

from htap_exporter import __version__, python_version, revision

# prometheus_client leaves it unannotated.
generate_openmetrics: Callable[[Collector], bytes] = openmetrics.generate_latest

OPENMETRICS_EOF = b"# EOF\n"


class _WithoutCreated(Collector):
    """A registry's families minus the `_created` samples prometheus_client adds to counters and
    histograms: they are not part of this exporter's documented metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            family.samples = [sample for sample in family.samples if not sample.name.endswith("_created")]
            yield family


class SelfMetrics:
    """The exporter's own metrics, in a registry of their own (never the global default one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        Gauge("htap_exporter_build_info", "The exporter's version, git revision and Python version (always 1).",
              ["version", "revision", "pythonversion"],
              registry=self.registry).labels(__version__, revision(), python_version()).set(1)
        self.reload_successful = Gauge("htap_config_last_reload_successful",
                                       "1 if the last configuration load succeeded, else 0.",
                                       registry=self.registry)
        self.reload_timestamp = Gauge("htap_config_last_reload_success_timestamp_seconds",
                                      "Unix time of the last successful configuration load.",
                                      registry=self.registry)
        self.api_requests = Counter("htap_api_requests", "HTTP requests to the cloud API, by API and"
                                    " status code (timeout or error when there was no answer).",
                                    ["api", "code"], registry=self.registry)
        self.api_duration = Histogram("htap_api_request_duration_seconds", "Duration of HTTP requests to"
                                      " the cloud API.", ["api"], registry=self.registry,
                                      buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self._exposed = _WithoutCreated(self.registry)
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def observe_request(self, api: str, code: str, seconds: float) -> None:
        # The labelled children, looked up once per (api, code): this runs for every request.
        children = self._children.get((api, code))
        if children is None:
            children = self._children[(api, code)] = (self.api_requests.labels(api, code),
                                                      self.api_duration.labels(api))
        children[0].inc()
        children[1].observe(seconds)

    def config_loaded(self, success: bool, when: float) -> None:
        self.reload_successful.set(1 if success else 0)
        if success:
            self.reload_timestamp.set(when)

    def render(self, openmetrics: bool = False) -> bytes:
        """The self-metrics in the text format or OpenMetrics (without `# EOF`, which the caller
        appends after joining them with the store's output)."""
        if not openmetrics:
            return generate_latest(self._exposed)
        body = generate_openmetrics(self._exposed)
        return body[:-len(OPENMETRICS_EOF)] if body.endswith(OPENMETRICS_EOF) else body
