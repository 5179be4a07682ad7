"""Per-instance stats -> exposition bytes, written once per poll; exporter self-metrics.

A scrape must never wait for the cloud nor re-render what has not changed, so each poll writes its
instance's samples once, in both the Prometheus text format (0.0.4) and OpenMetrics 1.0, split by
family; the store joins those bytes per family across instances. The samples are written directly
from the counts (precomputed HELP/TYPE lines, the formats' own escaping, prometheus_client's float
formatting): prometheus_client's families and `generate_latest` stay the oracle in the tests, which
require both to parse to identical samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterator, Mapping

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector,
                               ProcessCollector, generate_latest)
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from htap_exporter import __version__
from htap_exporter.collectors.sessions.counting import InstanceStats
from htap_exporter.cloud.transport import REASONS

INSTANCE_LABELS = ("instance_id", "instance_name")
OPENMETRICS_EOF = b"# EOF\n"


@dataclass(frozen=True)
class InstanceIdentity:
    instance_id: str
    instance_name: str
    project_id: str
    region: str
    facts: tuple[tuple[str, str], ...] = ()  # discovered: engine_version, node_count, status

    @property
    def labels(self) -> list[str]:
        return [self.instance_id, self.instance_name]

    @cached_property
    def writer(self) -> _InstanceWriter:
        """Its sample writer, made once: the label text of an instance never changes."""
        return _InstanceWriter(self)


@dataclass
class PollState:
    """What the poller knows about one instance; rendered after every poll."""

    up: bool = False
    stats: InstanceStats | None = None
    poll_duration: float | None = None
    last_success: float | None = None
    errors: dict[str, int] = field(default_factory=lambda: {reason: 0 for reason in REASONS})
    skipped_ticks: int = 0
    last_error_reason: str | None = None  # None after a success, or before the first poll
    # True from the moment the loop starts until its first poll ends: the instance is listed
    # (htap_instance_info, counters at 0) but has no htap_up yet, as a target has no `up` before
    # its first scrape; dashboards list it, `htap_up == 0` alerts do not fire for it.
    pending: bool = False


@dataclass(frozen=True)
class InstanceStatus:
    """One instance as the landing page shows it; stored with every rendered block."""

    instance_id: str
    instance_name: str
    project_id: str
    region: str
    up: bool
    last_error_reason: str | None
    last_success: float | None  # unix time
    sessions: int | None


@dataclass(frozen=True)
class InstanceBlock:
    """One instance's output: sample lines per family (the gauge histogram's buckets, `_gcount`
    and `_gsum` as three entries), written once and shared by both formats, and its status."""

    samples: dict[str, bytes]
    status: InstanceStatus


# --- the families: name, type, help ----------------------------------------------------------------

GAUGE, COUNTER, GAUGE_HISTOGRAM = "gauge", "counter", "gaugehistogram"
ACTIVE_HISTOGRAM = "htap_active_session_duration_seconds"

FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("htap_up", GAUGE, "1 if the last poll of this instance succeeded, else 0."),
    ("htap_instance_info", GAUGE, "Static facts about a polled HTAP instance (always 1)."),
    ("htap_sessions", GAUGE, "Sessions in the last successful poll."),
    ("htap_sessions_by_state", GAUGE, "Sessions by query state."),
    ("htap_sessions_by_command", GAUGE, "Sessions by command."),
    ("htap_sessions_by_user", GAUGE, "Sessions by user (top metrics.max_users, the rest as __other__)."),
    ("htap_sessions_by_database", GAUGE,
     "Sessions by database (top metrics.max_databases, the rest as __other__)."),
    ("htap_sessions_by_host", GAUGE,
     "Sessions by client host, port stripped (top metrics.max_hosts, the rest as __other__)."),
    ("htap_session_max_duration_seconds", GAUGE, "Longest duration of a session's current command, per command."),
    (ACTIVE_HISTOGRAM, GAUGE_HISTOGRAM, "Non-idle sessions by the duration of their current command."),
    ("htap_poll_duration_seconds", GAUGE, "Wall time of the last poll, all pages."),
    ("htap_last_poll_success_timestamp_seconds", GAUGE, "Unix time of the last successful poll."),
    ("htap_poll_errors", COUNTER, "Failed polls by reason."),
    ("htap_poll_skipped_ticks", COUNTER,
     "Poll ticks skipped because the previous poll of the instance was still running."),
)
DOCUMENTATION = {name: documentation for name, _, documentation in FAMILIES}


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _text_headers() -> dict[str, bytes]:
    """HELP/TYPE lines as generate_latest writes them: counters under `_total`, a gauge histogram as
    a histogram whose `_gcount` and `_gsum` are separate gauge families."""
    headers = {}
    for name, kind, documentation in FAMILIES:
        help_text = _escape_help(documentation)
        if kind == COUNTER:
            headers[name] = f"# HELP {name}_total {help_text}\n# TYPE {name}_total counter\n".encode()
        elif kind == GAUGE_HISTOGRAM:
            headers[name] = f"# HELP {name} {help_text}\n# TYPE {name} histogram\n".encode()
            for suffix in ("_gcount", "_gsum"):
                headers[name + suffix] = f"# HELP {name}{suffix} {help_text}\n# TYPE {name}{suffix} gauge\n".encode()
        else:
            headers[name] = f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n".encode()
    return headers


def _openmetrics_headers() -> dict[str, bytes]:
    """OpenMetrics: every family under its own name (no `_total`), the gauge histogram as one."""
    return {name: f"# HELP {name} {_escape_help(documentation)}\n# TYPE {name} {kind}\n".encode()
            for name, kind, documentation in FAMILIES}


TEXT_HEADERS = _text_headers()
OPENMETRICS_HEADERS = _openmetrics_headers()
# Small whole numbers (session counts) are most values: their text once, not per sample.
_SMALL_NUMBERS = tuple(floatToGoString(number) for number in range(4096))


def number_text(value: float) -> str:
    """prometheus_client's float formatting (Go's), so values read back bit-identical."""
    if type(value) is int:
        if 0 <= value < 4096:
            return _SMALL_NUMBERS[value]
    elif type(value) is float and 0.0 < value < 4096.0 and value.is_integer():
        return _SMALL_NUMBERS[int(value)]  # whole seconds, bucket bounds: the same text as the int
    return floatToGoString(value)


def escape_label_value(value: str) -> str:
    """The text formats' escaping of a label value: backslash, double quote and line feed."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


class _InstanceWriter:
    """Writes one instance's sample lines; label names are sorted, as prometheus_client writes them.

    A family whose figures equal the last poll's keeps the lines written then: between two polls
    most of an instance's counts (by state, user, database, command) do not change. Numbers that
    are equal get the same text (1 and 1.0 are both "1.0"); -0.0 would not, and the counting never
    gives one."""

    def __init__(self, identity: InstanceIdentity) -> None:
        self.ids = (f'instance_id="{escape_label_value(identity.instance_id)}",'
                    f'instance_name="{escape_label_value(identity.instance_name)}"')
        self.identity = identity
        self._written: dict[str, tuple[object, Any]] = {}  # family -> (its figures, its lines)

    def single(self, name: str, value: float) -> bytes:
        return f"{name}{{{self.ids}}} {number_text(value)}\n".encode()

    def by_label(self, name: str, label: str, values: Mapping[str, float], order: tuple[str, ...] = ()) -> bytes:
        """One sample per label value, sorted by value unless `order` gives the order."""
        written = self._written.get(name)
        if written is not None and written[0] == values:
            return written[1]
        ids = self.ids
        keys = order or sorted(values)
        # "command", "database", "host" sort before "instance_id"; "state", "user", "reason" after.
        if label < "instance_id":
            lines = [f'{name}{{{label}="{escape_label_value(key)}",{ids}}} {number_text(values[key])}\n'
                     for key in keys]
        else:
            lines = [f'{name}{{{ids},{label}="{escape_label_value(key)}"}} {number_text(values[key])}\n'
                     for key in keys]
        text = "".join(lines).encode()
        self._written[name] = (values, text)
        return text

    @cached_property
    def info(self) -> bytes:
        identity = self.identity
        labels = {"instance_id": identity.instance_id, "instance_name": identity.instance_name,
                  "project_id": identity.project_id, "region": identity.region, **dict(identity.facts)}
        text = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in sorted(labels.items()))
        return f"htap_instance_info{{{text}}} 1.0\n".encode()

    def histogram(self, stats: InstanceStats) -> tuple[bytes, bytes, bytes]:
        figures = (stats.active_buckets, stats.active_count, stats.active_sum)
        written = self._written.get(ACTIVE_HISTOGRAM)
        if written is not None and written[0] == figures:
            return written[1]  # type: ignore[no-any-return]
        ids = self.ids
        buckets = "".join(f'{ACTIVE_HISTOGRAM}_bucket{{{ids},le="{number_text(float(bound))}"}} {number_text(count)}\n'
                          for bound, count in stats.active_buckets)
        gcount = f"{ACTIVE_HISTOGRAM}_gcount{{{ids}}} {number_text(stats.active_count)}\n"
        gsum = f"{ACTIVE_HISTOGRAM}_gsum{{{ids}}} {number_text(stats.active_sum)}\n"
        lines = (buckets.encode(), gcount.encode(), gsum.encode())
        self._written[ACTIVE_HISTOGRAM] = (figures, lines)
        return lines


def instance_samples(identity: InstanceIdentity, state: PollState) -> dict[str, bytes]:
    """Family name -> sample lines of one instance (the gauge histogram as three entries)."""
    writer = identity.writer
    samples = {} if state.pending else {"htap_up": writer.single("htap_up", 1 if state.up else 0)}
    samples["htap_instance_info"] = writer.info
    stats = state.stats if state.up else None
    if stats is not None:
        samples["htap_sessions"] = writer.single("htap_sessions", stats.sessions)
        samples["htap_sessions_by_state"] = writer.by_label("htap_sessions_by_state", "state", stats.by_state)
        samples["htap_sessions_by_command"] = writer.by_label("htap_sessions_by_command", "command", stats.by_command)
        samples["htap_sessions_by_user"] = writer.by_label("htap_sessions_by_user", "user", stats.by_user)
        samples["htap_sessions_by_database"] = writer.by_label("htap_sessions_by_database", "database",
                                                               stats.by_database)
        if stats.by_host is not None:
            samples["htap_sessions_by_host"] = writer.by_label("htap_sessions_by_host", "host", stats.by_host)
        samples["htap_session_max_duration_seconds"] = writer.by_label(
            "htap_session_max_duration_seconds", "command", stats.max_duration_by_command)
        buckets, gcount, gsum = writer.histogram(stats)
        samples[ACTIVE_HISTOGRAM] = buckets
        samples[ACTIVE_HISTOGRAM + "_gcount"] = gcount
        samples[ACTIVE_HISTOGRAM + "_gsum"] = gsum
    if state.poll_duration is not None:
        samples["htap_poll_duration_seconds"] = writer.single("htap_poll_duration_seconds", state.poll_duration)
    if state.last_success is not None:
        samples["htap_last_poll_success_timestamp_seconds"] = writer.single(
            "htap_last_poll_success_timestamp_seconds", state.last_success)
    samples["htap_poll_errors"] = writer.by_label("htap_poll_errors_total", "reason",
                                                  {reason: state.errors.get(reason, 0) for reason in REASONS}, REASONS)
    samples["htap_poll_skipped_ticks"] = writer.single("htap_poll_skipped_ticks_total", state.skipped_ticks)
    return samples


def instance_status(identity: InstanceIdentity, state: PollState) -> InstanceStatus:
    stats = state.stats if state.up else None
    return InstanceStatus(identity.instance_id, identity.instance_name, identity.project_id, identity.region,
                          state.up, None if state.up else state.last_error_reason, state.last_success,
                          stats.sessions if stats is not None else None)


def render_instance(identity: InstanceIdentity, state: PollState) -> InstanceBlock:
    return InstanceBlock(instance_samples(identity, state), instance_status(identity, state))


# Family order and headers of each format. A text family is one samples entry; an OpenMetrics
# family may be several (the gauge histogram's buckets, count and sum, kept together per instance).
TEXT_LAYOUT: tuple[tuple[bytes, tuple[str, ...]], ...] = tuple(
    (TEXT_HEADERS[name], (name,)) for name in TEXT_HEADERS)
OPENMETRICS_LAYOUT: tuple[tuple[bytes, tuple[str, ...]], ...] = tuple(
    (OPENMETRICS_HEADERS[name], (name, name + "_gcount", name + "_gsum") if kind == GAUGE_HISTOGRAM else (name,))
    for name, kind, _ in FAMILIES)


# --- self-metrics ----------------------------------------------------------------------------------


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
