"""Metric families as data (name, type, help), their HELP/TYPE headers in both formats, and the
order in which a body lists them.

Collectors declare their families here once; the store keeps one column per family, so that a
scrape joins bytes that polls prepared instead of asking any collector for anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

GAUGE, COUNTER, GAUGE_HISTOGRAM = "gauge", "counter", "gaugehistogram"

# A body's plan: each family's header and the names of the sample entries it is made of (the
# OpenMetrics gauge histogram keeps an instance's buckets, `_gcount` and `_gsum` together).
Layout = tuple[tuple[bytes, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Family:
    """One metric family. `name` is the OpenMetrics family name (a counter without `_total`); the
    samples of a counter are written under `name_total` in both formats."""

    name: str
    kind: str
    help: str


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def text_headers(families: Iterable[Family]) -> dict[str, bytes]:
    """HELP/TYPE lines as generate_latest writes them: counters under `_total`, a gauge histogram as
    a histogram whose `_gcount` and `_gsum` are separate gauge families."""
    headers = {}
    for family in families:
        name, help_text = family.name, _escape_help(family.help)
        if family.kind == COUNTER:
            headers[name] = f"# HELP {name}_total {help_text}\n# TYPE {name}_total counter\n".encode()
        elif family.kind == GAUGE_HISTOGRAM:
            headers[name] = f"# HELP {name} {help_text}\n# TYPE {name} histogram\n".encode()
            for suffix in ("_gcount", "_gsum"):
                headers[name + suffix] = f"# HELP {name}{suffix} {help_text}\n# TYPE {name}{suffix} gauge\n".encode()
        else:
            headers[name] = f"# HELP {name} {help_text}\n# TYPE {name} {family.kind}\n".encode()
    return headers


def openmetrics_headers(families: Iterable[Family]) -> dict[str, bytes]:
    """OpenMetrics: every family under its own name (no `_total`), the gauge histogram as one."""
    return {family.name: f"# HELP {family.name} {_escape_help(family.help)}\n# TYPE {family.name} {family.kind}\n"
            .encode() for family in families}


@dataclass(frozen=True)
class Layouts:
    """The order of the families in a body, per format."""

    text: Layout
    openmetrics: Layout

    @classmethod
    def of(cls, families: Iterable[Family]) -> Layouts:
        ordered = list(dict.fromkeys(families))
        names = [family.name for family in ordered]
        if len(set(names)) != len(names):
            raise ValueError(f"a family is declared twice: {sorted(n for n in names if names.count(n) > 1)}")
        text = text_headers(ordered)
        openmetrics = openmetrics_headers(ordered)
        return cls(
            text=tuple((text[name], (name,)) for name in text),
            openmetrics=tuple(
                (openmetrics[family.name],
                 (family.name, family.name + "_gcount", family.name + "_gsum")
                 if family.kind == GAUGE_HISTOGRAM else (family.name,))
                for family in ordered))

    def parts(self) -> tuple[tuple[str, ...], ...]:
        """Every column the store keeps: a text family, or an OpenMetrics family's entries together."""
        return tuple(dict.fromkeys(names for _, names in self.text + self.openmetrics))
