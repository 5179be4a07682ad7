"""A page of the session list: JSON bytes -> rows holding the fields that counting reads.

msgspec decodes a well-formed page straight into `Row` structs: the fields nobody reads, above all
`sql_statement` (customer SQL, often most of a page's bytes), are skipped without ever becoming
Python strings, and no dictionary is built per row. Measured on pages of 100 simulator rows (their
SQL text made three times longer, 13-25 KB a page): 37 us per page against 67 us for orjson into
dictionaries, and more for the standard library.

msgspec also checks the field types as it decodes, at C speed: on the usual page every label field
is a string or missing, every id a string of at most MAX_ID_LENGTH characters, every duration a
non-negative number (or a string, or missing), and the page is marked `checked`, so that counting
need not check them again row by row. A page that breaks one of these rules is decoded again
without the checks, and counted the careful way; a page whose list holds values that are not
objects is decoded a third time, as plain JSON, and those values are left out (and counted).

What is not JSON (RFC 8259) is a `bad_response`: malformed text, bytes that are not UTF-8, the
literals NaN and Infinity, a lone surrogate escape (\\ud800), nesting deeper than msgspec follows.
A number beyond the float range is infinite, as Python's own parser makes it.

The top sessions read `sql_statement` when they export a digest or fingerprint of it: only then is a
page decoded `with_sql`, into `SqlRow`s (the same fields and the statement), by decoders of their
own, so that the usual page pays nothing for it. Even then the statement stays undecoded JSON
(`msgspec.Raw`, a view of the page's bytes) until `statement_of` reads it, for the few rows selected:
a page's 100 statements are not made into strings for the five that are read.

A poll decodes through its fleet's `PageDecoder`, which knows the label values seen so far: users,
states, databases and commands repeat page after page across a fleet, and a field whose values are
known is decoded as one of them (a msgspec `Literal`), the same string object every time. No new
string is made for it, and its hash is already known when counting puts it in a dictionary: on
pages of 100 simulator rows, decoding and counting took 100 us a page against 113 us with a new
string per value. A page with a value not known yet is decoded the usual way, and its values are
learnt; a field with too many values (MAX_LEARNED_VALUES), or a long one, is decoded as plain
strings from then on. Without `metrics.hosts`, rows have no `host`: nothing reads it.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from htap_exporter.cloud.transport import parse_json

FIELDS = ("id", "user", "host", "state", "database", "command", "duration")
SQL_FIELDS = FIELDS + ("sql_statement",)
# Session ids longer than this are remembered by a 16-byte digest (dedup.session_id_key): a poll
# keeps every id it saw (de-duplication across pages), and a hostile server must not make that cost
# 16 KB per row.
MAX_ID_LENGTH = 64
# Durations up to 2**53 seconds convert to floats exactly.
MAX_EXACT_DURATION = 2 ** 53

_LABEL = str | None
# The types a checked page's fields may have (see above); anything goes in a Row.
_CHECKED_TYPES: dict[str, Any] = {
    "id": Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)] | None,
    "user": _LABEL, "host": _LABEL, "state": _LABEL, "database": _LABEL, "command": _LABEL,
    "duration": (Annotated[int, msgspec.Meta(ge=0, le=MAX_EXACT_DURATION)]
                 | Annotated[float, msgspec.Meta(ge=0)] | str | None),
}
# Decoded JSON holds no cycles (gc=False): nothing for the collector to track.
Row = msgspec.defstruct("Row", [(name, Any, None) for name in FIELDS], module=__name__, gc=False)
_CheckedRow = msgspec.defstruct("_CheckedRow", [(name, _CHECKED_TYPES[name], None) for name in FIELDS],
                                module=__name__, gc=False)
# The statement is whatever the API sent (a string, usually), kept as undecoded JSON by the decoders
# (see statement_of): only sql_text reads it.
_STATEMENT = ("sql_statement", msgspec.Raw, None)
SqlRow = msgspec.defstruct("SqlRow", [(name, Any, None) for name in FIELDS] + [_STATEMENT], module=__name__, gc=False)
_CheckedSqlRow = msgspec.defstruct(
    "_CheckedSqlRow", [(name, _CHECKED_TYPES[name], None) for name in FIELDS] + [_STATEMENT], module=__name__, gc=False)


class _Page(msgspec.Struct, gc=False):
    process_list: list[Row]  # type: ignore[valid-type]


class _CheckedPage(msgspec.Struct, gc=False):
    process_list: list[_CheckedRow]  # type: ignore[valid-type]


class _SqlPage(msgspec.Struct, gc=False):
    process_list: list[SqlRow]  # type: ignore[valid-type]


class _CheckedSqlPage(msgspec.Struct, gc=False):
    process_list: list[_CheckedSqlRow]  # type: ignore[valid-type]


# float_hook: a number beyond the float range (1e400) is inf where the type is Any, not an error.
_DECODERS: dict[bool, tuple[Any, Any]] = {
    False: (msgspec.json.Decoder(_CheckedPage), msgspec.json.Decoder(_Page, float_hook=float)),
    True: (msgspec.json.Decoder(_CheckedSqlPage), msgspec.json.Decoder(_SqlPage, float_hook=float)),
}
_ROW_TYPES: frozenset[type] = frozenset({Row, _CheckedRow, SqlRow, _CheckedSqlRow})


class BadPage(ValueError):
    """The body is not a page of the session list: the message says why (a `bad_response`)."""


@dataclass(slots=True)
class Page:
    """A page's rows, ready for counting."""

    rows: list[Any]  # Rows; _CheckedRows (which have the same fields) when `checked`
    checked: bool = False  # the field types were checked while decoding (see above)
    skipped: int = 0  # values of the page that were not JSON objects, left out

    @property
    def size(self) -> int:
        """The page's length as the API sent it, for pagination."""
        return len(self.rows) + self.skipped


def decode_page(body: bytes, with_sql: bool = False) -> Page:
    """The page when the body is an object whose `process_list` is a list; else BadPage.
    `with_sql`: rows are SqlRows, which hold `sql_statement` too."""
    checked, unchecked = _DECODERS[with_sql]
    try:
        try:
            return Page(checked.decode(body).process_list, checked=True)
        except msgspec.ValidationError:
            # JSON that the checked types refuse: a field of an unusual type or range (decoded
            # again, unchecked), or a page of another shape (which that refuses too).
            pass
        try:
            return Page(unchecked.decode(body).process_list)
        except msgspec.ValidationError:
            pass
        # A type refused stops a decoder before the end: the rest may still be malformed.
        document = parse_json(body)
    except (msgspec.DecodeError, RecursionError) as problem:  # ValidationError is a DecodeError too
        raise BadPage(f"invalid JSON: {str(problem)[:120]}") from None
    if not isinstance(document, dict):
        raise BadPage("response is not a JSON object")
    rows = document.get("process_list")
    if rows is None:
        raise BadPage("response has no process_list")
    if not isinstance(rows, list):
        raise BadPage("process_list is not a list")
    return page_of(rows, with_sql)


def page_of(values: list[Any], with_sql: bool = False) -> Page:
    """Parsed JSON rows (or rows of a decoded page) as a Page; values that are not objects are left
    out and counted. `with_sql`: objects become SqlRows, which keep `sql_statement`."""
    if all(type(value) in _ROW_TYPES for value in values):
        return Page(values)
    row_type, fields = (SqlRow, SQL_FIELDS) if with_sql else (Row, FIELDS)
    rows = [value if type(value) in _ROW_TYPES else row_type(**{name: value.get(name) for name in fields})
            for value in values if type(value) is dict or type(value) in _ROW_TYPES]
    return Page(rows, skipped=len(values) - len(rows))


# The label fields a PageDecoder learns the values of: few per fleet, in every row.
LEARNED_FIELDS = ("user", "state", "database", "command")
# A field with more values than this (in the fleet, since start) is decoded as plain strings again:
# each new value costs a page decoded twice and a new decoder (~1 ms with this many values).
MAX_LEARNED_VALUES = 256
# Longer values are not learnt (and their field is decoded as plain strings again): a label value is
# short; a server inventing long ones must not make the decoder hold them.
MAX_LEARNED_LENGTH = 128


class PageDecoder:
    """decode_page for a fleet's polls, with the label values seen so far decoded as literals (see
    above). Learns from the pages it decodes the usual way: the first, and those with a value it did
    not know yet. `hosts`: whether rows keep `host` (metrics.hosts)."""

    __slots__ = ("hosts", "_values", "_decoders", "_refused")

    def __init__(self, *, hosts: bool = True) -> None:
        self.hosts = hosts
        # Field -> the values learnt; None once given up on (too many, or too long).
        self._values: dict[str, set[str] | None] | None = None  # None: no page learnt from yet
        self._decoders: dict[bool, Any] = {}  # with_sql -> a decoder of the values learnt so far
        # The last page decoded the usual way was not a checked one: a server whose pages the checked
        # types refuse (negative durations, say) would otherwise cost every page a third decoding.
        self._refused = False

    def decode(self, body: bytes, with_sql: bool = False) -> Page:
        """decode_page's page: the same rows, decoded at less cost once their values are known."""
        decoder = self._decoders.get(with_sql)
        if decoder is None and self._values is not None:
            decoder = self._decoders[with_sql] = _learned_decoder(self._values, with_sql, self.hosts)
        if decoder is not None and not self._refused:
            try:
                return Page(decoder.decode(body).process_list, checked=True)
            except msgspec.ValidationError:
                pass  # a value not learnt yet, or a page the checked types refuse: decode_page says which
            except (msgspec.DecodeError, RecursionError) as problem:
                raise BadPage(f"invalid JSON: {str(problem)[:120]}") from None
        page = decode_page(body, with_sql)
        self._refused = not page.checked
        if page.checked:
            self._learn(page.rows)
        return page

    def learnt(self, field: str) -> frozenset[str] | None:
        """The values of a label field decoded as literals; None when that field is decoded as plain
        strings (nothing learnt yet, or given up on)."""
        values = self._values.get(field) if self._values is not None else None
        return frozenset(values) if values is not None else None

    def _learn(self, rows: list[Any]) -> None:
        """The values of a checked page's label fields (strings or None)."""
        if self._values is None:
            self._values = {name: set() for name in LEARNED_FIELDS}
            self._decoders.clear()
        for name, known in self._values.items():
            if known is None:
                continue
            seen = set(map(operator.attrgetter(name), rows))
            seen.discard(None)
            new = seen - known
            if not new:
                continue
            if len(known) + len(new) > MAX_LEARNED_VALUES or max(map(len, new)) > MAX_LEARNED_LENGTH:
                self._values[name] = None
            else:
                known |= new
            self._decoders.clear()


def _learned_decoder(values: dict[str, set[str] | None], with_sql: bool, hosts: bool) -> Any:
    """A checked page's decoder whose label fields take only the values learnt (or null)."""
    types = dict(_CHECKED_TYPES)
    for name, known in values.items():
        if known is not None:
            types[name] = Literal[tuple(sorted(known))] | None if known else None
    fields = [(name, types[name], None) for name in FIELDS if hosts or name != "host"]
    if with_sql:
        fields.append(_STATEMENT)
    row = msgspec.defstruct("_LearnedRow", fields, module=__name__, gc=False)
    page = msgspec.defstruct("_LearnedPage", [("process_list", list[row])], module=__name__,  # type: ignore[valid-type]
                             gc=False)
    return msgspec.json.Decoder(page)


def statement_of(row: Any) -> Any:
    """A row's `sql_statement` as the API sent it (a string, usually; None when missing)."""
    statement = row.sql_statement
    if type(statement) is msgspec.Raw:
        try:
            return parse_json(statement)
        except msgspec.DecodeError:  # JSON, but not text Python can hold (a lone surrogate, \ud800)
            return None
    return statement


def as_mapping(row: Any) -> dict[str, Any]:
    """A row's fields; None for one its decoder left out (`host` without metrics.hosts)."""
    return {name: getattr(row, name, None) for name in FIELDS}
