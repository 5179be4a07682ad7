"""Session rows -> per-instance statistics. Pure functions: no I/O, no clock, no globals.

`sql_statement` is dropped at parse time: it is customer SQL text and must never reach a label,
a log line or memory that outlives the poll.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from exporter.config import MetricsConfig

UNKNOWN = "unknown"
OTHER = "__other__"
# Always exported (0 when absent) so that dashboards and alerts never see a missing series.
KNOWN_STATES = ("OK", "EOF", "ERR", "NOOP")
KNOWN_COMMANDS = ("Sleep", "Query")
# `state` and `command` are StarRocks enums with a dozen values; this cap only guards Prometheus
# against a broken or hostile server inventing thousands of them.
MAX_ENUM_VALUES = 50


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user: str
    host: str
    state: str
    database: str
    command: str
    duration: float | None  # None when the API gave no usable number


@dataclass(frozen=True)
class InstanceStats:
    sessions: int
    by_state: dict[str, int]
    by_command: dict[str, int]
    by_user: dict[str, int]
    by_database: dict[str, int]
    by_host: dict[str, int] | None
    max_duration_by_command: dict[str, float]
    # Cumulative counts per upper bound (the last bound is +Inf), sum and count of active sessions.
    active_buckets: tuple[tuple[float, int], ...]
    active_sum: float
    active_count: int
    rows_without_duration: int


def label_value(value: Any) -> str:
    """The one place API strings become label values: trimmed, empty or missing -> `unknown`."""
    if isinstance(value, bool):
        return UNKNOWN
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii():  # JSON can carry lone surrogates (\ud800), which UTF-8 cannot encode
            text = text.encode("utf-8", "replace").decode("utf-8")
        return text if text else UNKNOWN
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    return UNKNOWN


def parse_duration_value(value: Any) -> float | None:
    """The API documents a string, shows an integer and the SDKs use a float: accept all three."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # a JSON integer beyond the float range
            return None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number


def client_ip(host: str) -> str:
    """`ip:port` -> `ip`; `[v6]:port` -> `v6`; anything else unchanged."""
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 1 else host
    if host.count(":") == 1:
        ip, _, port = host.partition(":")
        if port.isdigit() and ip:
            return ip
    return host


def parse_session(row: Mapping[str, Any]) -> Session:
    return Session(
        id=label_value(row.get("id")),
        user=label_value(row.get("user")),
        host=label_value(row.get("host")),
        state=label_value(row.get("state")),
        database=label_value(row.get("database")),
        command=label_value(row.get("command")),
        duration=parse_duration_value(row.get("duration")),
    )


def cap_counts(counts: Mapping[str, int], limit: int, always: Iterable[str] = ()) -> dict[str, int]:
    """Keep the `limit` largest values (ties by name, so the result is stable; `always` ones first);
    fold the rest into `__other__`. Caps the label cardinality an instance can put into Prometheus."""
    if len(counts) <= limit:
        return dict(counts)
    kept = {value: counts[value] for value in always if value in counts}
    ranked = sorted((item for item in counts.items() if item[0] not in kept), key=lambda item: (-item[1], item[0]))
    room = max(0, limit - len(kept))
    kept.update(ranked[:room])
    kept[OTHER] = kept.get(OTHER, 0) + sum(count for _, count in ranked[room:])
    return kept


def cap_maxima(maxima: Mapping[str, float], kept: Mapping[str, int]) -> dict[str, float]:
    """Per-command maxima over the commands that `cap_counts` kept; the folded ones as `__other__`."""
    capped: dict[str, float] = {}
    for command, value in maxima.items():
        key = command if command in kept else OTHER
        capped[key] = max(value, capped.get(key, value))
    return capped


def aggregate(sessions: Iterable[Session], config: MetricsConfig) -> InstanceStats:
    by_state: Counter[str] = Counter({state: 0 for state in KNOWN_STATES})
    by_command: Counter[str] = Counter({command: 0 for command in KNOWN_COMMANDS})
    by_user: Counter[str] = Counter()
    by_database: Counter[str] = Counter()
    by_host: Counter[str] = Counter()
    max_duration: dict[str, float] = {command: 0.0 for command in KNOWN_COMMANDS}
    bounds = tuple(config.duration_buckets) + (math.inf,)
    bucket_counts = [0] * len(bounds)
    active_sum = 0.0
    active_count = 0
    total = 0
    without_duration = 0
    for session in sessions:
        total += 1
        by_state[session.state] += 1
        by_command[session.command] += 1
        by_user[session.user] += 1
        by_database[session.database] += 1
        if config.hosts:
            by_host[client_ip(session.host)] += 1
        duration = session.duration
        if duration is None:
            without_duration += 1
            continue
        if duration > max_duration.get(session.command, -1.0):
            max_duration[session.command] = duration
        if session.command in config.idle_commands:
            continue
        active_count += 1
        active_sum += duration
        for index, bound in enumerate(bounds):
            if duration <= bound:
                bucket_counts[index] += 1
                break
    cumulative = 0
    buckets = []
    for bound, count in zip(bounds, bucket_counts):
        cumulative += count
        buckets.append((bound, cumulative))
    commands = cap_counts(by_command, MAX_ENUM_VALUES, KNOWN_COMMANDS)
    return InstanceStats(
        sessions=total,
        by_state=cap_counts(by_state, MAX_ENUM_VALUES, KNOWN_STATES),
        by_command=commands,
        by_user=cap_counts(by_user, config.max_users),
        by_database=cap_counts(by_database, config.max_databases),
        by_host=cap_counts(by_host, config.max_hosts) if config.hosts else None,
        max_duration_by_command=cap_maxima(max_duration, commands),
        active_buckets=tuple(buckets),
        active_sum=active_sum,
        active_count=active_count,
        rows_without_duration=without_duration,
    )
