"""Per-instance stats -> exposition sections, rendered once per poll; exporter self-metrics.

A scrape must never wait for the cloud nor re-render what has not changed, so each poll renders its
instance's metric families once (with prometheus_client's own exposition code) and keeps them
split by family; the store joins those bytes per family across instances at scrape time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector,
                               ProcessCollector, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from prometheus_client.metrics_core import Metric

from exporter import __version__
from exporter.sessions import InstanceStats
from exporter.transport import REASONS

INSTANCE_LABELS = ("instance_id", "instance_name")


@dataclass(frozen=True)
class InstanceIdentity:
    instance_id: str
    instance_name: str
    project_id: str
    region: str

    @property
    def labels(self) -> list[str]:
        return [self.instance_id, self.instance_name]


@dataclass
class PollState:
    """What the poller knows about one instance; rendered after every poll."""

    up: bool = False
    stats: InstanceStats | None = None
    poll_duration: float | None = None
    last_success: float | None = None
    errors: dict[str, int] = field(default_factory=lambda: {reason: 0 for reason in REASONS})
    skipped_ticks: int = 0


@dataclass(frozen=True)
class Section:
    header: bytes  # the HELP and TYPE lines of one family
    samples: bytes


def _family_sections(families: Iterable[Metric]) -> dict[str, Section]:
    """Render with the library, then split the text into families at each `# HELP` line (label
    values cannot hold a raw newline, so a line that starts with `# HELP ` is always a header)."""
    text = generate_latest(_Families(list(families)))
    sections: dict[str, Section] = {}
    name, header, samples = "", b"", []
    # Split on b"\n" only: splitlines() also breaks at a raw \r, which a label value may hold.
    for line in text[:-1].split(b"\n") if text else []:
        line += b"\n"
        if line.startswith(b"# HELP "):
            if name:
                sections[name] = Section(header, b"".join(samples))
            name, header, samples = line[7:].split(b" ", 1)[0].decode(), line, []
        elif line.startswith(b"# TYPE "):
            header += line
        else:
            samples.append(line)
    if name:
        sections[name] = Section(header, b"".join(samples))
    return sections


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _gauge_by(name: str, documentation: str, label: str, values: dict[str, int] | dict[str, float],
              identity: InstanceIdentity) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[*INSTANCE_LABELS, label])
    for value_label, value in sorted(values.items()):
        family.add_metric([*identity.labels, value_label], value)
    return family


def _single(name: str, documentation: str, value: float, identity: InstanceIdentity) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(INSTANCE_LABELS))
    family.add_metric(identity.labels, value)
    return family


def instance_families(identity: InstanceIdentity, state: PollState) -> list[Metric]:
    families: list[Metric] = [
        _single("htap_up", "1 if the last poll of this instance succeeded, else 0.", 1 if state.up else 0, identity),
    ]
    info = GaugeMetricFamily("htap_instance_info", "Static facts about a polled HTAP instance (always 1).",
                             labels=[*INSTANCE_LABELS, "project_id", "region"])
    info.add_metric([*identity.labels, identity.project_id, identity.region], 1)
    families.append(info)
    stats = state.stats if state.up else None
    if stats is not None:
        families += [
            _single("htap_sessions", "Sessions in the last successful poll.", stats.sessions, identity),
            _gauge_by("htap_sessions_by_state", "Sessions by query state.", "state", stats.by_state, identity),
            _gauge_by("htap_sessions_by_command", "Sessions by command.", "command", stats.by_command, identity),
            _gauge_by("htap_sessions_by_user", "Sessions by user (top metrics.max_users, the rest as __other__).",
                      "user", stats.by_user, identity),
            _gauge_by("htap_sessions_by_database",
                      "Sessions by database (top metrics.max_databases, the rest as __other__).",
                      "database", stats.by_database, identity),
        ]
        if stats.by_host is not None:
            families.append(_gauge_by(
                "htap_sessions_by_host", "Sessions by client host, port stripped (top metrics.max_hosts,"
                " the rest as __other__).", "host", stats.by_host, identity))
        families.append(_gauge_by("htap_session_max_duration_seconds",
                                  "Longest duration of a session's current command, per command.",
                                  "command", stats.max_duration_by_command, identity))
        histogram = GaugeHistogramMetricFamily(
            "htap_active_session_duration_seconds",
            "Non-idle sessions by the duration of their current command.", labels=list(INSTANCE_LABELS))
        histogram.add_metric(identity.labels,
                             [(floatToGoString(bound), count) for bound, count in stats.active_buckets],
                             gsum_value=stats.active_sum)
        families.append(histogram)
    if state.poll_duration is not None:
        families.append(_single("htap_poll_duration_seconds", "Wall time of the last poll, all pages.",
                                state.poll_duration, identity))
    if state.last_success is not None:
        families.append(_single("htap_last_poll_success_timestamp_seconds",
                                "Unix time of the last successful poll.", state.last_success, identity))
    errors = CounterMetricFamily("htap_poll_errors", "Failed polls by reason.", labels=[*INSTANCE_LABELS, "reason"])
    for reason in REASONS:
        errors.add_metric([*identity.labels, reason], state.errors.get(reason, 0))
    families.append(errors)
    skipped = CounterMetricFamily("htap_poll_skipped_ticks", "Poll ticks skipped because the previous poll"
                                  " of the instance was still running.", labels=list(INSTANCE_LABELS))
    skipped.add_metric(identity.labels, state.skipped_ticks)
    families.append(skipped)
    return families



def render_instance(identity: InstanceIdentity, state: PollState) -> dict[str, Section]:
    return _family_sections(instance_families(identity, state))


class SelfMetrics:
    """The exporter's own metrics, in a registry of their own (never the global default one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        Gauge("htap_exporter_build_info", "Version of the exporter (always 1).",
              ["version"], registry=self.registry).labels(__version__).set(1)
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

    def observe_request(self, api: str, code: str, seconds: float) -> None:
        self.api_requests.labels(api, code).inc()
        self.api_duration.labels(api).observe(seconds)

    def config_loaded(self, success: bool, when: float) -> None:
        self.reload_successful.set(1 if success else 0)
        if success:
            self.reload_timestamp.set(when)

    def render(self) -> bytes:
        return generate_latest(self.registry)
