"""ShowHtapQueryQueuesRule: the query-queue switch and limits of one instance. Pure.

`{"query_queue_rule": {...}}` (spec: htap-sibling-apis.md section 5). Configuration, not load: the
API shows no live queue depth. Quirks read leniently: the switch is a `"true"`/`"false"` string (a
JSON boolean is taken too), numbers may come as strings, the memory and CPU limits are percentages
(exported as ratios), and 0 means unlimited. An unreadable value is counted and left out; a
document of the wrong shape raises ApiError("bad_response").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from htap_exporter.cloud.client import ProjectClient
from htap_exporter.cloud.errors import ApiError
from htap_exporter.collectors.base import (CollectorOutput, Samples, declare, get_json, json_object, kind_of,
                                          render)
from htap_exporter.exposition.families import Family
from htap_exporter.exposition.writer import InstanceIdentity

QUERY_QUEUE_API = "show_query_queue_rule"

FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("htap_query_queue_enabled", "gauge", "1 if the query queue is on for SELECT, 0 if off."),
    ("htap_query_queue_concurrency_limit", "gauge", "Concurrent queries per BE before queueing; 0 = unlimited."),
    ("htap_query_queue_max_queued_queries", "gauge", "Queue capacity: a query arriving when it is full is rejected."),
    ("htap_query_queue_pending_timeout_seconds", "gauge", "Longest a query may wait in the queue."),
    ("htap_query_queue_memory_limit_ratio", "gauge", "Memory use per BE before queueing (ratio); 0 = unlimited."),
    ("htap_query_queue_cpu_limit_ratio", "gauge", "CPU use per BE before queueing (ratio); 0 = unlimited."),
)


@dataclass(frozen=True)
class QueueRule:
    enabled: bool | None
    concurrency_limit: float | None
    max_queued_queries: float | None
    pending_timeout_seconds: float | None
    memory_limit_ratio: float | None
    cpu_limit_ratio: float | None
    bad_values: int


def parse_flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "true":
            return True
        if text == "false":
            return False
    return None


def parse_number(value: Any) -> float | None:
    """A non-negative finite number, as a JSON number or a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits: no limit anyone set
        return None
    return number if math.isfinite(number) and number >= 0 else None


def parse_percentage(value: Any) -> float | None:
    number = parse_number(value.strip().removesuffix("%") if isinstance(value, str) else value)
    return None if number is None or number > 100 else number / 100.0


def parse_rule(document: Any) -> QueueRule:
    rule = json_object(document, "query-queue rule").get("query_queue_rule")
    if not isinstance(rule, dict):
        raise ApiError("bad_response", f"query-queue rule: query_queue_rule is {kind_of(rule)}, not an object")
    bad = 0

    def read(key: str, parser: Any) -> Any:
        nonlocal bad
        raw = rule.get(key)
        value = parser(raw)
        if value is None and raw is not None and not (isinstance(raw, str) and not raw.strip()):
            bad += 1
        return value

    return QueueRule(
        enabled=read("enable_query_queue_select", parse_flag),
        concurrency_limit=read("query_queue_concurrency_limit", parse_number),
        max_queued_queries=read("query_queue_max_queued_queries", parse_number),
        pending_timeout_seconds=read("query_queue_pending_timeout_second", parse_number),
        memory_limit_ratio=read("query_queue_mem_used_pct_limit", parse_percentage),
        cpu_limit_ratio=read("query_queue_cpu_used_pct_limit", parse_percentage),
        bad_values=bad,
    )


def samples(rule: QueueRule) -> Samples:
    """Family name -> (extra labels, value); a value the API did not give (readably) is absent."""
    values: dict[str, float | None] = {
        "htap_query_queue_enabled": None if rule.enabled is None else float(rule.enabled),
        "htap_query_queue_concurrency_limit": rule.concurrency_limit,
        "htap_query_queue_max_queued_queries": rule.max_queued_queries,
        "htap_query_queue_pending_timeout_seconds": rule.pending_timeout_seconds,
        "htap_query_queue_memory_limit_ratio": rule.memory_limit_ratio,
        "htap_query_queue_cpu_limit_ratio": rule.cpu_limit_ratio,
    }
    return {name: [] if (value := values[name]) is None else [({}, value)] for name, _, _ in FAMILIES}



@dataclass(frozen=True)
class QueryQueueCollector:
    """ShowHtapQueryQueuesRule, one call per run."""

    interval: float
    name: str = "query_queue"
    families: tuple[Family, ...] = declare(FAMILIES)
    riders: tuple[str, ...] = ()
    reports_up: bool = False

    async def collect(self, instance: InstanceIdentity, client: ProjectClient) -> CollectorOutput:
        document = await get_json(client, QUERY_QUEUE_API,
                                  f"/v3/{client.project_id}/instances/{instance.instance_id}/query-queue/rules")
        return CollectorOutput(render(instance.writer, samples(parse_rule(document))))
