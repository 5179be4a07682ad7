"""Caps on the label values an instance can put into Prometheus: the largest counts are kept,
the rest folded into `__other__`."""

from __future__ import annotations

from typing import Iterable, Mapping

from htap_exporter.collectors.labels import OTHER

# `state` and `command` are StarRocks enums with a dozen values; this cap only guards Prometheus
# against a broken or hostile server inventing thousands of them.
MAX_ENUM_VALUES = 50


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
