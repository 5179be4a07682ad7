"""The longest-running sessions of an instance, read from the session pages the poll already walks.

`TopSessions` sees every page's rows as they stream by and keeps a heap of at most `count` rows:
never the list, never a sort of it. A page is first narrowed at C speed to the rows at least as long
as the shortest one that could still enter (min_duration, or the heap's shortest once it is full);
only those few are looked at one by one. Idle commands (`metrics.idle_commands`) never enter.

`top_session_samples` turns the selection into label sets and values. With `sql: none` the
statement is never read; with `digest` or `fingerprint` it is read for the selected rows only, and
only through sql_text, which writes no literal.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import operator
from typing import Any, Iterable, Literal

from htap_exporter.collectors.labels import UNKNOWN, label_value
from htap_exporter.collectors.sessions.counting import client_ip, parse_duration_value
from htap_exporter.collectors.sessions.dedup import session_id_key
from htap_exporter.collectors import sql_text

TOP_SESSIONS = "top_sessions"  # the collector's name
SqlMode = Literal["none", "digest", "fingerprint"]
SQL_MODES = ("none", "digest", "fingerprint")
_DURATION = operator.attrgetter("duration")
_COMMAND = operator.attrgetter("command")
_ID = operator.attrgetter("id")
_STR = frozenset({str})
_NUMBERS = frozenset({int, float})
_LABEL_TYPES = frozenset({str, type(None)})


class _Entry:
    """A selected row. Ordered worst first (the heap's root): shorter, then the larger id, then the
    later one, so that of equal durations the smaller session id is kept, whatever the order of the
    pages."""

    __slots__ = ("duration", "key", "order", "row")

    def __init__(self, duration: float, key: str, order: int, row: Any) -> None:
        self.duration = duration
        self.key = key
        self.order = order
        self.row = row

    def __lt__(self, other: _Entry) -> bool:
        if self.duration != other.duration:
            return self.duration < other.duration
        if self.key != other.key:
            return self.key > other.key
        return self.order > other.order


class TopSessions:
    """The `count` longest non-idle rows of at least `min_duration` seconds, over a poll's pages."""

    def __init__(self, count: int, min_duration: float, idle_commands: Iterable[str]) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.count = count
        self.min_duration = float(min_duration)
        self._idle = frozenset(idle_commands)
        self._idle_raw: dict[Any, bool] = {}  # raw command -> idle, a handful per instance
        self._heap: list[_Entry] = []
        self._ids: set[str | bytes] = set()  # ids of the selected rows: a row seen twice counts once
        self._order = itertools.count()

    def _threshold(self) -> float:
        heap = self._heap
        return heap[0].duration if len(heap) >= self.count else self.min_duration

    def offer_page(self, rows: list[Any]) -> None:
        """Offer a page's rows. The usual page (plain numbers as durations, strings as commands) is
        narrowed at C speed to the rows that can enter: long enough, not idle, and among the page's
        `count` longest (ties included); only those are offered one by one."""
        durations = list(map(_DURATION, rows))
        if not set(map(type, durations)) <= _NUMBERS:
            for row in rows:
                self.offer(row)
            return
        # Equal durations may still enter (a smaller id wins a tie): >=, not >.
        keep = list(map(operator.le, itertools.repeat(self._threshold()), durations))
        rows = list(itertools.compress(rows, keep))
        if not rows:
            return
        durations = list(itertools.compress(durations, keep))
        commands = list(map(_COMMAND, rows))
        if not set(map(type, commands)) <= _LABEL_TYPES:
            for row in rows:  # a command of another type: offer() decides row by row
                self.offer(row)
            return
        # Idle or not, decided once per distinct command (a handful a page).
        idle = {command: self._is_idle(command) for command in set(commands)}
        keep = list(map(operator.not_, map(idle.__getitem__, commands)))
        rows = list(itertools.compress(rows, keep))
        durations = list(itertools.compress(durations, keep))
        # Rows without a usable id never enter (see offer): they must not take the places below. The
        # usual page's ids are all non-empty strings, told at C speed; otherwise row by row.
        ids = list(map(_ID, rows))
        if not (set(map(type, ids)) <= _STR and all(map(str.strip, ids))):
            keep = [session_id_key(one) is not None for one in ids]
            rows = list(itertools.compress(rows, keep))
            durations = list(itertools.compress(durations, keep))
        # All finite (an inf or NaN is no duration, and must not push a real one out): then only
        # the page's `count` longest can enter.
        if len(rows) > self.count and _all_finite(durations):
            shortest = heapq.nlargest(self.count, durations)[-1]
            rows = list(itertools.compress(rows, map(operator.le, itertools.repeat(shortest), durations)))
        for row in rows:
            self.offer(row)

    def offer(self, row: Any) -> None:
        duration = parse_duration_value(row.duration)
        if duration is None or duration < self.min_duration:
            return
        heap = self._heap
        full = len(heap) >= self.count
        if full and duration < heap[0].duration:
            return
        if self._is_idle(row.command):
            return
        key = session_id_key(row.id)
        if key is None or key in self._ids:
            # Without an id a session cannot be named nor ended, and two of them would be two
            # series with the same labels.
            return
        entry = _Entry(duration + 0.0, label_value(row.id, 1 << 31), next(self._order), row)
        if not full:
            heapq.heappush(heap, entry)
        elif heap[0] < entry:
            dropped = heapq.heapreplace(heap, entry)
            self._ids.discard(session_id_key(dropped.row.id))
        else:
            return
        self._ids.add(key)

    def _is_idle(self, command: Any) -> bool:
        idle = self._idle_raw.get(command) if type(command) is str or command is None else None
        if idle is None:
            idle = label_value(command) in self._idle
            if (type(command) is str or command is None) and len(self._idle_raw) < 256:
                self._idle_raw[command] = idle
        return idle

    def result(self) -> list[Any]:
        """The selected rows, longest first (equal durations: smaller session id first)."""
        return [entry.row for entry in sorted(self._heap, reverse=True)]


def _all_finite(numbers: list[float | int]) -> bool:
    try:
        return math.isfinite(sum(numbers))
    except OverflowError:  # an integer beyond the float range
        return False


class FingerprintCache:
    """Fingerprints and digests of statements, remembered across polls: a long-running session shows
    the same statement poll after poll, and tokenizing costs ~50 us where this costs ~1 us. Keyed by a
    16-byte hash of the statement, so no statement text outlives its poll. Bounded (emptied when
    full)."""

    __slots__ = ("limit", "_entries")

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._entries: dict[tuple[bytes, int], tuple[str, str]] = {}

    def labels(self, sql: Any, max_length: int) -> tuple[str, str]:
        """(sql_digest, sql_fingerprint) of a statement; `unknown` for both without one."""
        if type(sql) is not str or not sql.strip():
            return UNKNOWN, UNKNOWN
        key = (hashlib.blake2b(sql.encode("utf-8", "surrogatepass"), digest_size=16).digest(), max_length)
        found = self._entries.get(key)
        if found is None:
            found = _sql_labels(sql, max_length)
            if len(self._entries) >= self.limit:
                self._entries.clear()
            self._entries[key] = found
        return found


def _sql_labels(sql: Any, max_length: int) -> tuple[str, str]:
    if type(sql) is not str:
        return UNKNOWN, UNKNOWN
    normalised = sql_text.normalise(sql)
    if not normalised:
        return UNKNOWN, UNKNOWN
    # The digest is of the whole fingerprint, so it does not change with max_label_length.
    return sql_text.digest(normalised), label_value(normalised, max_length)


def top_session_samples(selected: Iterable[Any], *, sql_mode: SqlMode, hosts: bool, max_label_length: int,
                        fingerprints: FingerprintCache | None = None) -> list[tuple[dict[str, str], float]]:
    """The samples of `htap_top_session_duration_seconds` for the selected rows (longest first):
    (labels, duration seconds). Labels: session_id, user, database, command, state; + host (the
    client's IP) when `hosts`; + sql_digest with `sql_mode` digest or fingerprint; + sql_fingerprint
    with fingerprint."""
    if sql_mode not in SQL_MODES:
        raise ValueError(f"sql_mode must be one of {', '.join(SQL_MODES)}")
    samples: list[tuple[dict[str, str], float]] = []
    for row in selected:
        duration = parse_duration_value(row.duration)
        if duration is None:
            continue
        labels = {
            "session_id": label_value(row.id, max_label_length),
            "user": label_value(row.user, max_label_length),
            "database": label_value(row.database, max_label_length),
            "command": label_value(row.command, max_label_length),
            "state": label_value(row.state, max_label_length),
        }
        if hosts:
            labels["host"] = client_ip(label_value(row.host, max_label_length))
        if sql_mode != "none":
            sql = row.sql_statement  # read only here, only in these two modes
            if fingerprints is not None:
                sql_digest, sql_fingerprint = fingerprints.labels(sql, max_label_length)
            else:
                sql_digest, sql_fingerprint = _sql_labels(sql, max_label_length)
            labels["sql_digest"] = sql_digest
            if sql_mode == "fingerprint":
                labels["sql_fingerprint"] = sql_fingerprint
        samples.append((labels, duration + 0.0))
    return samples
