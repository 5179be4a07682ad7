"""The longest-running sessions of an instance, read from the session pages the poll already walks.

`TopSessions` sees every page's rows as they stream by and keeps at most `count` rows, in order:
never the list, never a sort of it. It rides on the session counter (SessionCounter's
`active_rows`), which already groups each page's new rows by command, tells idle commands
(`metrics.idle_commands`, which never enter) from the rest, checks their durations and sorts them
(for the histogram): the rider reads from those sorted durations the shortest that could still
enter, keeps the rows at least that long (one comparison each), and looks at only those one by one.

`top_session_samples` turns the selection into label sets and values. With `sql: none` the
statement is never read; with `digest` or `fingerprint` it is read for the selected rows only, and
only through sql_text, which writes no literal.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import operator
from dataclasses import dataclass
from typing import Any, Iterable, Literal

import msgspec

from htap_exporter.collectors.labels import UNKNOWN, LabelCache, label_value
from htap_exporter.collectors.sessions.counting import client_ip, parse_duration_value
from htap_exporter.collectors.sessions.dedup import session_id_key
from htap_exporter.collectors.sessions.pages import MAX_EXACT_DURATION, MAX_ID_LENGTH, statement_of
from htap_exporter.exposition.store import TopSession
from htap_exporter.exposition.writer import InstanceWriter, number_text

TOP_SESSIONS = "top_sessions"  # the collector's name
# Below this, a non-negative float's repr is the text of Go's formatting (number_text): what `%r`
# writes into a template.
_REPR_BELOW = 1e6
SqlMode = Literal["none", "digest", "fingerprint"]
SQL_MODES = ("none", "digest", "fingerprint")
# sql_text and the tokenizer it uses (sqlglot, ~0.2 s of a start's ~0.75 s of imports) are imported
# only where statements are read: `sql: none`, the default, and every other run of the exporter
# (`--version`, `--config.check`) never load them. TopSessionLines loads them when it is made (as a
# config is applied), so that a poll never waits for the import.
SQL_TEXT = "htap_exporter.collectors.sql_text"


class TopSessions:
    """The `count` longest non-idle rows of at least `min_duration` seconds, over a poll's pages.

    The selection is a list of at most `count` entries `(-duration, id label, row)`, kept sorted:
    best first (longer, then of equal durations the smaller session id, whatever the order of the
    pages), so the worst is the last. Entries are compared as tuples, at C speed (new ones merged
    by one sort), and never up to the row: the list never holds two entries of one label (two ids
    of one label would be one series twice). Rows come with distinct ids, as the session counter
    hands them over (de-duplicated by id, SeenIds): an id that is plain text is its own label, so
    only labels that cleaning made (label_value) are checked against the others."""

    def __init__(self, count: int, min_duration: float, idle_commands: Iterable[str]) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.count = count
        self.min_duration = float(min_duration)
        self._idle = frozenset(idle_commands)
        self._idle_raw: dict[Any, bool] = {}  # raw command -> idle, a handful per instance
        self._top: list[tuple[float, str, Any]] = []
        # The shortest duration that may still enter: min_duration, then the selection's shortest
        # once it is full (equal durations may still enter: a smaller id wins a tie).
        self.floor = self.min_duration

    def __len__(self) -> int:
        return len(self._top)

    def offer_active(self, rows: list[Any], durations: list[float | int] | None,
                     ordered: list[float | int] | None = None) -> None:
        """Offer rows that are new in this poll and whose command is not idle, as the session counter
        hands them over (SessionCounter's `active_rows`): with `durations`, their durations, plain
        non-negative numbers aligned with the rows; without, rows to be read one by one. `ordered`:
        these durations sorted, or a sorted list whose numbers of at least `floor` are exactly
        theirs (the session counter's histogram sorts the page's non-idle durations anyway).

        Only the rows at least as long as the shortest that could still enter (min_duration, or the
        selection's shortest once it is full) and among these rows' `count` longest (ties included)
        are looked at one by one: that cut is read from the sorted durations, and the rows at or
        above it are found by one comparison per duration (a page's 100 at most); a page with none
        costs two comparisons."""
        if not durations:
            if durations is None:
                for row in rows:
                    self.offer(row)
            return
        if ordered is None:
            ordered = sorted(durations)
        count = self.count
        cut = ordered[-count] if len(ordered) > count else ordered[0]
        if cut < self.floor:
            cut = self.floor
            if ordered[-1] < cut:
                return
            if cut.is_integer() and cut <= MAX_EXACT_DURATION:
                # Whole seconds as an int, as the API's durations are: comparing an int with an int
                # costs less than with a float.
                cut = int(cut)
        # One comparison per duration: cheaper than finding each of the few rows by a scan of its own.
        self._merge([(rows[index], duration) for index, duration in enumerate(durations) if duration >= cut], rows)

    def _merge(self, picked: list[tuple[Any, float | int]], rows: list[Any]) -> None:
        """Rows that may enter, merged into the selection; `rows`: all those of their offer."""
        top, count = self._top, self.count
        entries: list[tuple[float, str, Any]] = []
        for row, duration in picked:
            raw_id = row.id
            if type(raw_id) is str:  # the usual id: its label is itself, stripped (as _id_label makes it)
                label = raw_id.strip()
                if label and len(label) <= MAX_ID_LENGTH and label.isascii() and label.isprintable():
                    entries.append((-(duration + 0.0), label, row))
                    continue
            key = session_id_key(raw_id)
            if key is None:  # a session without an id can be neither named nor ended
                if len(picked) < len(rows):
                    # Rows without a usable id never enter: they must not take the places of rows
                    # that can. Rare (the API gives every session an id): the slow way.
                    for row in rows:
                        self.offer(row)
                    return
                continue
            label = _id_label(key, row.id)
            # A label that cleaning made may be another id's (two ids differing in what it
            # replaced): the first one taken keeps it. Rare: a scan of the few entries.
            if label is key or label not in {entry[1] for entry in itertools.chain(top, entries)}:
                entries.append((-(duration + 0.0), label, row))
        if entries:
            # Merged by one C-speed sort of the selection and the offer's few new entries, never up
            # to the row: the labels are distinct.
            top += entries
            top.sort()
            if len(top) > count:
                del top[count:]
            if len(top) >= count:
                self.floor = -top[-1][0]

    def offer(self, row: Any) -> None:
        """One row, read on its own (rows that counting could not check)."""
        duration = parse_duration_value(row.duration)
        if duration is None or duration < self.floor or self._is_idle(row.command):
            return
        self._merge([(row, duration)], [row])  # which leaves a row without an id out

    def _is_idle(self, command: Any) -> bool:
        idle = self._idle_raw.get(command) if type(command) is str or command is None else None
        if idle is None:
            idle = label_value(command) in self._idle
            if (type(command) is str or command is None) and len(self._idle_raw) < 256:
                self._idle_raw[command] = idle
        return idle

    def selected(self) -> tuple[list[Any], list[float]]:
        """The selected rows and their durations (as TopSessionLines.render takes them), longest first
        (equal durations: smaller session id first)."""
        top = self._top
        return [entry[2] for entry in top], [-entry[0] for entry in top]


def _id_label(key: str | bytes, raw_id: Any) -> str:
    """The label of a session id: its key itself when that is plain text (as label_value makes it).
    TopSessions._merge takes a plain string id's label the same way without calling this (nor
    session_id_key): a change to either rule is a change to that fast path too."""
    return key if type(key) is str and key.isascii() and key.isprintable() else label_value(raw_id, 1 << 31)


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
    from htap_exporter.collectors import sql_text  # (see SQL_TEXT)
    normalised = sql_text.normalise(sql)
    if not normalised:
        return UNKNOWN, UNKNOWN
    # The digest is of the whole fingerprint, so it does not change with max_label_length.
    return sql_text.digest(normalised), label_value(normalised, max_length)


def top_session_samples(selected: Iterable[Any], *, sql_mode: SqlMode, hosts: bool, max_label_length: int,
                        fingerprints: FingerprintCache | None = None,
                        labels_of: LabelCache | None = None) -> list[tuple[dict[str, str], float]]:
    """The samples of `htap_top_session_duration_seconds` for the selected rows (longest first):
    (labels, duration seconds). Labels: session_id, user, database, command, state; + host (the
    client's IP) when `hosts`; + sql_digest with `sql_mode` digest or fingerprint; + sql_fingerprint
    with fingerprint. `labels_of`: the fleet's cache of cleaned values (users, databases, commands
    and states repeat), for `max_label_length`."""
    if sql_mode not in SQL_MODES:
        raise ValueError(f"sql_mode must be one of {', '.join(SQL_MODES)}")
    if labels_of is None or labels_of.max_length != max_label_length:
        labels_of = LabelCache(max_label_length)
    clean = labels_of.clean
    samples: list[tuple[dict[str, str], float]] = []
    for row in selected:
        duration = parse_duration_value(row.duration)
        if duration is None:
            continue
        labels = {
            "session_id": label_value(row.id, max_label_length),
            "user": clean(row.user),
            "database": clean(row.database),
            "command": clean(row.command),
            "state": clean(row.state),
        }
        if hosts:
            labels["host"] = client_ip(label_value(row.host, max_label_length))
        if sql_mode != "none":
            sql = statement_of(row)  # read only here, only in these two modes
            if fingerprints is not None:
                sql_digest, sql_fingerprint = fingerprints.labels(sql, max_label_length)
            else:
                sql_digest, sql_fingerprint = _sql_labels(sql, max_label_length)
            labels["sql_digest"] = sql_digest
            if sql_mode == "fingerprint":
                labels["sql_fingerprint"] = sql_fingerprint
        samples.append((labels, duration + 0.0))
    return samples


def _statement_key(statement: Any) -> Any:
    """What tells a statement from another in TopSessionLines' keys: a 16-byte hash, never its text."""
    if type(statement) is str:
        statement = statement.encode("utf-8", "surrogatepass")
    if isinstance(statement, (bytes, msgspec.Raw)):
        return hashlib.blake2b(statement, digest_size=16).digest()
    return statement


_MSGPACK = msgspec.msgpack.Encoder()


def _signature(keys: list[tuple[Any, ...]] | tuple[Any, ...]) -> bytes | None:
    """Keys (the selection's, or one session's) as one msgpack string, compared with the last
    poll's at C speed in one piece: the keys' strings are new objects every poll, and comparing
    them one by one with the last poll's (kept for a whole interval, far from the processor's
    caches) costs more. msgpack tells apart what == does not (True and 1, 1 and 1.0, which are
    other labels) and what JSON does not (inf and null). None for a value msgpack cannot write (an
    integer beyond 64 bits): such a selection is written again, such a session's labels made afresh."""
    try:
        return _MSGPACK.encode(keys)
    except (TypeError, OverflowError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class _Written:
    """An instance's selection as its last poll wrote it: per selected session (longest first) the
    signature of its key (raw values and a hash of the statement, never its text), its label set
    and the text of its line up to the value; the whole selection's signature; and all the lines as
    one template with a `%r` for each value."""

    row_signatures: list[bytes | None]
    signature: bytes | None
    labels: list[dict[str, str]]
    prefixes: list[bytes]
    template: bytes


class TopSessionLines:
    """Each instance's top sessions as samples and sample lines, made from what its last poll made:
    a long-running session keeps its labels poll after poll (only its duration moves), so its label
    set and the text of its line up to the value are made once, not every poll (cleaning five
    values, a statement's digest and the line's escaping cost ~15 us a session; this ~2 us). When
    the selection holds the same sessions with the same labels as the last poll (long queries stay
    on top), its lines are that poll's template filled with the new durations, at C speed. Per
    instance only its last poll's sessions are kept (at most `count`), by the signatures of their
    raw values and a hash of the statement (never its text); `retain` forgets the instances no
    longer polled."""

    def __init__(self, family: str, *, sql_mode: SqlMode, hosts: bool, max_label_length: int,
                 fingerprints: FingerprintCache | None = None, labels_of: LabelCache | None = None) -> None:
        if sql_mode not in SQL_MODES:
            raise ValueError(f"sql_mode must be one of {', '.join(SQL_MODES)}")
        if sql_mode != "none":
            importlib.import_module(SQL_TEXT)
        self.family = family
        self.sql_mode: SqlMode = sql_mode
        self.hosts = hosts
        self.max_label_length = max_label_length
        self.fingerprints = fingerprints
        self.labels_of = labels_of
        self._last: dict[str, _Written] = {}
        # The raw values a session's labels are made of, read at C speed.
        self._raw = operator.attrgetter("id", "user", "database", "command", "state", *(("host",) if hosts else ()))

    def render(self, writer: InstanceWriter, rows: list[Any],
               durations: list[float]) -> tuple[tuple[TopSession, ...], bytes]:
        """The samples (for the landing page) and sample lines of the selected rows and their
        durations (TopSessions.selected: plain non-negative floats), longest first."""
        instance_id = writer.identity.instance_id
        keys = list(map(self._raw, rows))
        if self.sql_mode != "none":
            keys = [key + (_statement_key(row.sql_statement),) for key, row in zip(keys, rows, strict=True)]
        signature = _signature(keys)
        written = self._last.get(instance_id)
        if written is None or signature is None or written.signature != signature:
            written = self._write(writer, rows, keys, signature, written)
            self._last[instance_id] = written
        samples = tuple(zip(written.labels, durations, strict=True))
        if not durations or max(durations) < _REPR_BELOW:
            return samples, written.template % tuple(durations)
        return samples, b"".join(prefix + number_text(duration).encode() + b"\n"
                                 for prefix, duration in zip(written.prefixes, durations, strict=True))

    def _write(self, writer: InstanceWriter, rows: list[Any], keys: list[tuple[Any, ...]], signature: bytes | None,
               last: _Written | None) -> _Written:
        """The selection's labels and line texts, reusing those of the sessions the last poll wrote."""
        # By each key's own signature: equal raw values of other types (True and 1) are other labels.
        known: dict[bytes | None, tuple[dict[str, str], bytes]] = {}
        if last is not None:
            known = dict(zip(last.row_signatures, zip(last.labels, last.prefixes, strict=True), strict=True))
            known.pop(None, None)  # a key msgpack could not write: made afresh
        row_signatures = list(map(_signature, keys))
        labels_list: list[dict[str, str]] = []
        prefixes: list[bytes] = []
        for row_signature, row in zip(row_signatures, rows, strict=True):
            found = known.get(row_signature)
            if found is None:
                found = self._make(writer, row)
            labels_list.append(found[0])
            prefixes.append(found[1])
        # A label value may hold a %: doubled in the template, so that only the values are filled in.
        template = b"".join(prefix.replace(b"%", b"%%") + b"%r\n" for prefix in prefixes)
        return _Written(row_signatures, signature, labels_list, prefixes, template)

    def _make(self, writer: InstanceWriter, row: Any) -> tuple[dict[str, str], bytes]:
        [(labels, _)] = top_session_samples([row], sql_mode=self.sql_mode, hosts=self.hosts,
                                            max_label_length=self.max_label_length,
                                            fingerprints=self.fingerprints, labels_of=self.labels_of)
        line = writer.samples(self.family, [(labels, 0.0)])
        return labels, line[:line.rindex(b" ") + 1]

    def retain(self, instance_ids: set[str]) -> None:
        for gone in self._last.keys() - instance_ids:
            del self._last[gone]
