"""Session rows -> per-instance statistics. Pure functions: no I/O, no clock, no globals.

A poll's SessionCounter counts each page's rows by label value and command; the jobs around it
are rooms of their own: de-duplication by session id (dedup.py), the active sessions' histogram
(histogram.py) and the caps on label values (capping.py).

`sql_statement` is dropped at parse time: it is customer SQL text and must never reach a label,
a log line or memory that outlives the poll.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple, Protocol

from htap_exporter.collectors.labels import DEFAULT_MAX_LABEL_LENGTH, LabelCache, label_value
from htap_exporter.collectors.sessions.capping import MAX_ENUM_VALUES, cap_counts, cap_maxima
from htap_exporter.collectors.sessions.dedup import SeenIds
from htap_exporter.collectors.sessions.histogram import ActiveHistogram
from htap_exporter.collectors.sessions.pages import MAX_EXACT_DURATION, Page, as_mapping, page_of
from htap_exporter.config import MetricsConfig

# Always exported (0 when absent) so that dashboards and alerts never see a missing series.
KNOWN_STATES = ("OK", "EOF", "ERR", "NOOP")
KNOWN_COMMANDS = ("Sleep", "Query")
# Raw values that may be counted before cleaning: equal ones always get equal labels.
_RAW_COUNTABLE = frozenset({str, type(None)})
_INT = {int}
_NUMBER = {int, float}
_DURATION = operator.attrgetter("duration")
# Raw commands up to this long are remembered for the poll with their label's figures.
MAX_REMEMBERED_LENGTH = 256


class ActiveRows(Protocol):
    """Sees each page's fresh non-idle rows, grouped as counting grouped them: (rows, their
    durations) when the durations are plain numbers (aligned with the rows), (rows, None) for rows
    to be read one by one. Of the commands whose durations are plain numbers, only those with a row
    at least `floor` long are handed over: a shorter row cannot interest the rider. With the plain
    rows, `ordered` (when not None): the page's non-idle durations sorted, as the histogram sorted
    them; those of at least `floor` are exactly the handed-over ones'."""

    floor: float

    def offer_active(self, rows: list[Any], durations: list[float | int] | None,
                     ordered: list[float | int] | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user: str
    host: str
    state: str
    database: str
    command: str
    duration: float | None  # None when the API gave no usable number


class InstanceStats(NamedTuple):
    """A poll's figures, made once a poll (a named tuple: made in a third of a frozen dataclass's
    time, with as many fields)."""

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


def parse_session(row: Mapping[str, Any], max_length: int = DEFAULT_MAX_LABEL_LENGTH) -> Session:
    """One row as a Session (for tests and debugging; polls count rows without building these)."""
    return Session(
        id=label_value(row.get("id"), 2 ** 31),
        user=label_value(row.get("user"), max_length),
        host=label_value(row.get("host"), max_length),
        state=label_value(row.get("state"), max_length),
        database=label_value(row.get("database"), max_length),
        command=label_value(row.get("command"), max_length),
        duration=parse_duration_value(row.get("duration")),
    )


class _CommandFigures:
    """What is counted per command: its sessions, and the longest duration among them."""

    __slots__ = ("count", "max_duration", "without_duration")

    def __init__(self) -> None:
        self.count = 0
        self.max_duration = -1.0
        self.without_duration = 0


def _plain_durations(values: list[Any]) -> list[float | int]:
    """The usable durations among `values`. Checked at C speed when they are plain non-negative
    numbers (the usual page: whole seconds), one by one otherwise."""
    kinds = set(map(type, values))
    if kinds == _INT:
        if min(values) >= 0 and max(values) <= MAX_EXACT_DURATION:
            return values
    elif kinds <= _NUMBER and values:
        try:
            total = math.fsum(values)
        except OverflowError:  # an integer beyond the float range
            total = math.inf
        if math.isfinite(total) and min(values) >= 0:
            return values
    return [number for number in map(parse_duration_value, values) if number is not None]


def _numeric_max(durations: list[Any]) -> int | float | None:
    """The largest of a checked page's durations if all of them are numbers, else None."""
    try:
        longest = max(durations)
    except TypeError:  # numbers mixed with strings or None
        return None
    return longest if type(longest) is int or type(longest) is float else None


class SessionCounter:
    """Aggregates a poll page by page: takes each page's rows, keeps only counters and the ids seen
    so far, so a poll's memory is one page plus the ids, whatever the instance's session count.

    Rows are counted on their raw values first, and each distinct value is cleaned once: a page
    holds ~100 rows but only a handful of users, states and commands. `clean(clean(x)) == clean(x)`
    holds for label_value, so values cleaned early and late land on the same label.

    This is the hot path of a poll (a third of the exporter's CPU at 1,000 instances before it was
    tuned): the usual page is counted with one Python loop over its rows (two with `metrics.hosts`)
    and otherwise C-speed passes (map, set, sorted); anything unusual goes a slower, per-value way.

    `active_rows` (the top sessions ride here) is handed each page's new non-idle rows with their
    durations as counting sorted them out: the rider pays for no pass of its own over the page.
    """

    def __init__(self, config: MetricsConfig, *, keep_sessions: bool = False,
                 labels: LabelCache | None = None, active_rows: ActiveRows | None = None) -> None:
        self.config = config
        self.pages = 0
        self.sessions = 0
        self.skipped_rows = 0  # rows that were not JSON objects
        self.kept: list[Session] | None = [] if keep_sessions else None
        self._max_length = config.max_label_length
        self._idle = config.idle_commands
        self._ids = SeenIds()
        self._states: dict[str, int] = {}
        self._users: dict[str, int] = {}
        self._databases: dict[str, int] = {}
        self._hosts: dict[str, int] = {}
        self._host_labels = LabelCache(config.max_label_length)  # raw host -> label, for this poll
        self._commands: dict[str, _CommandFigures] = {}
        # Raw command -> its figures and whether it is idle, decided once per poll, not once per page
        # (only for short raw values: a poll must not hold long ones).
        self._command_of: dict[Any, tuple[_CommandFigures, bool]] = {}
        if labels is None or labels.max_length != config.max_label_length:
            labels = LabelCache(config.max_label_length)
        self._clean = labels.clean
        self._labels = labels.labels  # what clean gives for the raw strings it has seen (looked up first)
        self._active = ActiveHistogram(config.duration_buckets)
        self._active_rows = active_rows

    def add_page(self, rows: list[Any]) -> int:
        """Count the rows not seen before in this poll; returns how many new ids the page had.
        `rows`: parsed JSON values (objects are counted, other values are left out and counted in
        `skipped_rows`), or Rows."""
        return self.add(page_of(rows))

    def add(self, page: Page) -> int:
        """add_page for a decoded page (see pages.decode_page)."""
        self.skipped_rows += page.skipped
        checked = page.checked
        fresh, new_ids = self._ids.fresh(page.rows, checked)
        if self.kept is not None:
            self.kept.extend(parse_session(as_mapping(row), self._max_length) for row in fresh)
        self.pages += 1
        self.sessions += len(fresh)
        states: dict[Any, int] = {}
        users: dict[Any, int] = {}
        databases: dict[Any, int] = {}
        groups: dict[Any, list[Any]] = {}  # command -> rows
        try:
            # One pass over the page, raw values only: no call per row (the hot loop of a poll).
            for row in fresh:
                value = row.state
                states[value] = states.get(value, 0) + 1
                value = row.user
                users[value] = users.get(value, 0) + 1
                value = row.database
                databases[value] = databases.get(value, 0) + 1
                value = row.command
                group = groups.get(value)
                if group is None:
                    group = groups[value] = []
                group.append(row)
        except TypeError:  # an unhashable value (a list, an object) somewhere: this page the slow way
            states, users, databases, groups = self._count_slowly(fresh)
        else:
            # True == 1 == 1.0 in Python, but they are three labels ("unknown", "1", "1.0"): raw
            # values other than strings are counted again after cleaning (a handful of keys to check;
            # a checked page has none).
            if not checked and not all(set(map(type, raw)) <= _RAW_COUNTABLE
                                       for raw in (states, users, databases, groups)):
                states, users, databases, groups = self._count_slowly(fresh)
        self._fold(states, self._states)
        self._fold(users, self._users)
        self._fold(databases, self._databases)
        if self.config.hosts:
            # Not through the fleet's label cache: every client port makes a new raw value.
            clean_host = self._host_labels.clean
            for row in fresh:
                host = client_ip(clean_host(row.host))
                self._hosts[host] = self._hosts.get(host, 0) + 1
        self._count_commands(groups, checked)
        return new_ids

    def _count_slowly(self, rows: list[Any]) -> tuple[dict[Any, int], dict[Any, int], dict[Any, int],
                                                      dict[Any, list[Any]]]:
        counts: tuple[dict[Any, int], dict[Any, int], dict[Any, int]] = ({}, {}, {})
        groups: dict[Any, list[Any]] = {}
        for row in rows:
            for name, found in zip(("state", "user", "database"), counts, strict=True):
                value = self._clean(getattr(row, name))
                found[value] = found.get(value, 0) + 1
            groups.setdefault(self._clean(row.command), []).append(row)
        return counts[0], counts[1], counts[2], groups

    def _count_commands(self, groups: dict[Any, list[Any]], checked: bool) -> None:
        """Per distinct command: its rows' count and longest duration; the durations of the commands
        that are not idle (decided once per command, not per row) go to the histogram, and their rows
        to `active_rows`."""
        active: list[float | int] = []
        rider = self._active_rows
        floor = rider.floor if rider is not None else math.inf
        plain_rows: list[Any] = []  # of the commands whose durations are all plain numbers
        plain_durations: list[float | int] = []
        odd_rows: list[Any] = []
        command_of = self._command_of
        for raw, rows in groups.items():
            known = command_of.get(raw)
            if known is None:
                known = self._command(raw)
            figures, idle = known
            durations = list(map(_DURATION, rows))
            figures.count += len(durations)
            # A checked page's durations are usable numbers, strings or None: when their maximum is
            # a number, all of them are (max refuses to compare a number with a string or None).
            longest = _numeric_max(durations) if checked else None
            if longest is not None:
                numbers = durations
            else:
                numbers = _plain_durations(durations)
                figures.without_duration += len(durations) - len(numbers)
                if not numbers:
                    continue
                longest = max(numbers)
            if longest > figures.max_duration:
                figures.max_duration = float(longest) + 0.0  # -0.0 (a JSON "-0.0") as 0.0
            if not idle:  # idle sessions have no place in the histogram, nor its sum
                active += numbers
                if rider is None:
                    continue
                if numbers is durations:
                    if longest >= floor:
                        plain_rows += rows
                        plain_durations += numbers
                else:
                    odd_rows += rows
        if active:
            self._active.add(active)  # sorts `active`
        if rider is not None:
            if plain_rows:
                # `active` holds the plain durations and those of the commands left out (all below
                # the floor), and, only when there are odd rows, numbers read from their values.
                rider.offer_active(plain_rows, plain_durations, None if odd_rows else active)
            if odd_rows:
                rider.offer_active(odd_rows, None)

    @property
    def has_ids(self) -> bool:
        """Whether any row so far had an id (pages without ids cannot be told apart)."""
        return self._ids.any

    def _command(self, raw: Any) -> tuple[_CommandFigures, bool]:
        """The figures of a raw command's label, and whether that command is idle; remembered for
        the poll when the raw value is short."""
        command = self._clean(raw)
        figures = self._commands.get(command)
        if figures is None:
            figures = self._commands[command] = _CommandFigures()
        known = (figures, command in self._idle)
        if raw is None or (type(raw) is str and len(raw) <= MAX_REMEMBERED_LENGTH):
            self._command_of[raw] = known
        return known

    def _fold(self, raw_counts: dict[Any, int], counts: dict[str, int]) -> None:
        labels = self._labels
        for raw, count in raw_counts.items():
            # The label cache's dictionary first (its keys are strings: None, or a value it did
            # not keep, goes through clean): a call less per value.
            value = labels.get(raw)
            if value is None:
                value = self._clean(raw)
            counts[value] = counts.get(value, 0) + count

    def result(self) -> InstanceStats:
        config = self.config
        by_state = {state: 0 for state in KNOWN_STATES}
        for state, count in self._states.items():
            by_state[state] = by_state.get(state, 0) + count
        by_command = {command: 0 for command in KNOWN_COMMANDS}
        max_duration = {command: 0.0 for command in KNOWN_COMMANDS}
        without_duration = 0
        for command, figures in self._commands.items():
            by_command[command] = by_command.get(command, 0) + figures.count
            without_duration += figures.without_duration
            if figures.max_duration > max_duration.get(command, -1.0):
                max_duration[command] = figures.max_duration
        commands = cap_counts(by_command, MAX_ENUM_VALUES, KNOWN_COMMANDS)
        return InstanceStats(
            sessions=self.sessions,
            by_state=cap_counts(by_state, MAX_ENUM_VALUES, KNOWN_STATES),
            by_command=commands,
            by_user=cap_counts(self._users, config.max_users),
            by_database=cap_counts(self._databases, config.max_databases),
            by_host=cap_counts(self._hosts, config.max_hosts) if config.hosts else None,
            max_duration_by_command=cap_maxima(max_duration, commands),
            active_buckets=self._active.cumulative(),
            active_sum=float(self._active.sum),
            active_count=self._active.count,
            rows_without_duration=without_duration,
        )


def aggregate(sessions: Iterable[Session], config: MetricsConfig) -> InstanceStats:
    """Stats of already parsed sessions (no de-duplication: that is the poll's job)."""
    counter = SessionCounter(config)
    counter.add_page([{"user": s.user, "host": s.host, "state": s.state, "database": s.database,
                       "command": s.command, "duration": s.duration} for s in sessions])
    return counter.result()
