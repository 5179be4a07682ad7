"""One instance's sample lines, written once per run of a collector, in the text formats' syntax.

A scrape must never wait for the cloud nor re-render what has not changed, so every run writes its
instance's samples once (sample lines are the same in text 0.0.4 and OpenMetrics 1.0 for gauges and
counters); the store joins those bytes per family across instances. The lines are written directly
(the formats' own escaping, prometheus_client's float formatting); prometheus_client's families and
`generate_latest` stay the oracle in the tests, which require both to parse to identical samples.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Callable, Hashable, Iterable, Mapping, TypeVar

from prometheus_client import utils

# prometheus_client leaves it unannotated.
floatToGoString: Callable[[float], str] = utils.floatToGoString

INSTANCE_LABELS = ("instance_id", "instance_name")
# Small whole numbers (session counts) are most values: their text once, not per sample.
_SMALL_NUMBERS = tuple(floatToGoString(number) for number in range(4096))

# (extra labels, value) of one sample: how collectors hand their figures to the writer.
Sample = tuple[Mapping[str, str], float]
T = TypeVar("T")


def number_text(value: float) -> str:
    """prometheus_client's float formatting (Go's), so values read back bit-identical."""
    if type(value) is int:
        if 0 <= value < 4096:
            return _SMALL_NUMBERS[value]
    elif type(value) is float:
        if 0.0 < value < 4096.0 and value.is_integer():
            return _SMALL_NUMBERS[int(value)]  # whole seconds, bucket bounds: the same text as the int
        if -1e6 < value < 1e6:
            # floatToGoString's own text there: Python's repr, which it changes only for exponents
            # from 1e6 up (Go switches to them sooner), and for the infinities and NaN.
            return repr(value)
    return floatToGoString(value)


def escape_label_value(value: str) -> str:
    """The text formats' escaping of a label value: backslash, double quote and line feed."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


@dataclass(frozen=True)
class InstanceIdentity:
    """An instance as every collector and the store see it: its labels and where it lives."""

    instance_id: str
    instance_name: str
    project_id: str
    region: str
    facts: tuple[tuple[str, str], ...] = ()  # discovered: engine_version, node_count, status
    taurus_instance_id: str | None = None  # the TaurusDB instance it belongs to, when known

    @property
    def labels(self) -> list[str]:
        return [self.instance_id, self.instance_name]

    @cached_property
    def writer(self) -> InstanceWriter:
        """Its sample writer, made once: the label text of an instance never changes."""
        return InstanceWriter(self)


class InstanceWriter:
    """Writes one instance's sample lines; label names are sorted, as prometheus_client writes them.

    A family whose figures equal the last run's keeps the lines written then: between two polls
    most of an instance's counts (by state, user, database, command) do not change. Numbers that
    are equal get the same text (1 and 1.0 are both "1.0"); -0.0 would not, and no collector gives
    one. The remembered lines are keyed by family and, where several collectors write the same
    family for one instance (htap_collector_success), by the caller's key."""

    def __init__(self, identity: InstanceIdentity) -> None:
        self.ids = (f'instance_id="{escape_label_value(identity.instance_id)}",'
                    f'instance_name="{escape_label_value(identity.instance_name)}"')
        # A copy: the identity keeps its writer, and a cycle would leave every stopped instance's
        # writer to the cycle collector (which the process freezes out after an apply: gcsettings).
        self.identity = replace(identity)
        self._written: dict[Hashable, tuple[object, Any]] = {}  # key -> (its figures, its lines)

    def single(self, name: str, value: float) -> bytes:
        return self.single_text(name, number_text(value))

    def single_text(self, name: str, text: str) -> bytes:
        """`single` for a value already in its text (see by_label_text)."""
        return f"{name}{{{self.ids}}} {text}\n".encode()

    def by_label(self, name: str, label: str, values: Mapping[str, float], order: tuple[str, ...] = (),
                 key: Hashable = None) -> bytes:
        """One sample per label value, sorted by value unless `order` gives the order."""
        key = name if key is None else key
        written = self._written.get(key)
        if written is not None and written[0] == values:
            return written[1]  # type: ignore[no-any-return]
        keys = order or sorted(values)
        text = self._label_lines(name, label, keys, [number_text(values[k]) for k in keys])
        self._written[key] = (values, text)
        return text

    def by_label_text(self, name: str, label: str, texts: Mapping[str, str]) -> bytes:
        """`by_label` for values already in their text, sorted by label value: a run's success time
        is written several times a run (the poll's, each collector's of a block), and the text of a
        timestamp costs ~2.4 us (Go's formatting of a float beyond 1e6), so it is made once. The
        lines are not remembered (a success time changes with every successful run), but their text
        up to the value is, per set of label values: written after every run, it cost ~1.9 us a run
        made afresh, ~0.6 us so."""
        key = ("text", name, label, tuple(texts))
        written = self._written.get(key)
        if written is None:
            keys = sorted(texts)
            # _label_lines' own lines with empty values, cut at their line feeds (label values and
            # the instance's labels have theirs escaped): each line's text up to the value.
            prefixes = self._label_lines(name, label, keys, ["" for _ in keys]).decode().split("\n")[:-1]
            written = self._written[key] = (None, tuple(zip(keys, prefixes, strict=True)))
        return "".join([f"{prefix}{texts[k]}\n" for k, prefix in written[1]]).encode()

    def _label_lines(self, name: str, label: str, keys: Iterable[str], numbers: list[str]) -> bytes:
        ids = self.ids
        pairs = zip(keys, numbers, strict=True)
        # "command", "database", "host" sort before "instance_id"; "state", "user", "reason" after.
        if label < "instance_id":
            lines = [f'{name}{{{label}="{escape_label_value(k)}",{ids}}} {n}\n' for k, n in pairs]
        else:
            lines = [f'{name}{{{ids},{label}="{escape_label_value(k)}"}} {n}\n' for k, n in pairs]
        return "".join(lines).encode()

    def cached(self, key: Hashable, figures: object, write: Callable[[], T]) -> T:
        """`write()`, or what it gave last time for `key` if `figures` are the same as then."""
        written = self._written.get(key)
        if written is not None and written[0] == figures:
            return written[1]  # type: ignore[no-any-return]
        lines = write()
        self._written[key] = (figures, lines)
        return lines

    def samples(self, name: str, samples: Iterable[Sample]) -> bytes:
        """Samples with any extra labels (low-volume families: replication tasks, nodes, top
        sessions); label names sorted, the instance's labels among them (sorted once per set of
        label names: a family's samples usually share one)."""
        identity = self._identity_values
        orders: dict[tuple[str, ...], list[str]] = {}
        lines = []
        for labels, value in samples:
            keys = tuple(labels)
            names = orders.get(keys)
            if names is None:
                names = orders[keys] = sorted({*keys, *INSTANCE_LABELS})
            values = {**labels, **identity}
            text = ",".join([f'{label}="{escape_label_value(values[label])}"' for label in names])
            lines.append(f"{name}{{{text}}} {number_text(value)}\n")
        return "".join(lines).encode()

    @cached_property
    def _identity_values(self) -> dict[str, str]:
        return {"instance_id": self.identity.instance_id, "instance_name": self.identity.instance_name}

    @cached_property
    def info(self) -> bytes:
        identity = self.identity
        labels = {"instance_id": identity.instance_id, "instance_name": identity.instance_name,
                  "project_id": identity.project_id, "region": identity.region, **dict(identity.facts)}
        text = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in sorted(labels.items()))
        return f"htap_instance_info{{{text}}} 1.0\n".encode()

    def histogram(self, name: str, buckets: Iterable[tuple[float, int]], count: int,
                  total: float) -> tuple[bytes, bytes, bytes]:
        """A gauge histogram's `_bucket` lines (cumulative counts per upper bound), `_gcount` and
        `_gsum`, as three entries."""
        buckets = tuple(buckets)
        figures = (buckets, count, total)
        written = self._written.get(name)
        if written is not None and written[0] == figures:
            return written[1]  # type: ignore[no-any-return]
        ids = self.ids
        bucket_lines = "".join(f'{name}_bucket{{{ids},le="{number_text(float(bound))}"}} {number_text(n)}\n'
                               for bound, n in buckets)
        lines = (bucket_lines.encode(), f"{name}_gcount{{{ids}}} {number_text(count)}\n".encode(),
                 f"{name}_gsum{{{ids}}} {number_text(total)}\n".encode())
        self._written[name] = (figures, lines)
        return lines
