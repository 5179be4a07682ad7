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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

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
    return {name: getattr(row, name) for name in FIELDS}
