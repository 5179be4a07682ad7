"""A page of the session list: JSON bytes -> rows holding the fields that counting reads.

With msgspec (the `fast` extra) a well-formed page is decoded straight into `Row` structs: the
fields nobody reads, above all `sql_statement` (customer SQL, often most of a page's bytes), are
skipped without ever becoming Python strings, and no dictionary is built per row. Measured on
pages of 100 simulator rows (their SQL text made three times longer, 13-25 KB a page): 37 us per
page against 67 us for orjson into dictionaries.

msgspec also checks the field types as it decodes, at C speed: on the usual page every label field
is a string or missing, every id a string of at most MAX_ID_LENGTH characters, every duration a
non-negative number (or a string, or missing), and the page is marked `checked`, so that counting
need not check them again row by row. A page that breaks one of these rules is decoded again
without the checks, and counted the careful way. Whatever msgspec does not decode at all
(malformed JSON, a row that is not an object, a number beyond the float range, a lone surrogate,
deep nesting) returns None and goes the generic way, where the standard library decides, exactly
as without msgspec: msgspec either agrees with it or refuses.

Without msgspec, `Row` is a plain class and every page goes the generic way.

The top sessions read `sql_statement` when they export a digest or fingerprint of it: only then is a
page decoded `with_sql`, into `SqlRow`s (the same fields and the statement), by decoders of their
own, so that the usual page pays nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

FIELDS = ("id", "user", "host", "state", "database", "command", "duration")
SQL_FIELDS = FIELDS + ("sql_statement",)
# Session ids longer than this are remembered by a 16-byte digest (sessions.session_id_key): a poll
# keeps every id it saw (de-duplication across pages), and a hostile server must not make that cost
# 16 KB per row.
MAX_ID_LENGTH = 64
# Durations up to 2**53 seconds convert to floats exactly.
MAX_EXACT_DURATION = 2 ** 53

try:
    import msgspec
except ImportError:  # pragma: no cover - the test extra installs msgspec; tests force the generic path
    msgspec = None  # type: ignore[assignment]  # without the `fast` extra; the branch below tests it

# mypy reads the plain classes of the second branch: the structs of the first are made at run time,
# with the same fields.
if msgspec is not None and not TYPE_CHECKING:
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

    class _Page(msgspec.Struct, gc=False):
        process_list: list[Row]

    class _CheckedPage(msgspec.Struct, gc=False):
        process_list: list[_CheckedRow]

    _DECODER: Any = msgspec.json.Decoder(_Page)
    _CHECKED_DECODER: Any = msgspec.json.Decoder(_CheckedPage)

    # The statement is whatever the API sent (a string, usually): only sql_text reads it.
    SqlRow = msgspec.defstruct("SqlRow", [(name, Any, None) for name in SQL_FIELDS], module=__name__, gc=False)
    _CheckedSqlRow = msgspec.defstruct(
        "_CheckedSqlRow", [(name, _CHECKED_TYPES.get(name, Any), None) for name in SQL_FIELDS],
        module=__name__, gc=False)

    class _SqlPage(msgspec.Struct, gc=False):
        process_list: list[SqlRow]

    class _CheckedSqlPage(msgspec.Struct, gc=False):
        process_list: list[_CheckedSqlRow]

    _SQL_DECODER: Any = msgspec.json.Decoder(_SqlPage)
    _CHECKED_SQL_DECODER: Any = msgspec.json.Decoder(_CheckedSqlPage)
    _ROW_TYPES: frozenset[type] = frozenset({Row, _CheckedRow, SqlRow, _CheckedSqlRow})
else:  # pragma: no cover
    class Row:
        __slots__ = FIELDS

        def __init__(self, id: Any = None, user: Any = None, host: Any = None, state: Any = None,
                     database: Any = None, command: Any = None, duration: Any = None) -> None:
            self.id, self.user, self.host, self.state = id, user, host, state
            self.database, self.command, self.duration = database, command, duration

    class SqlRow(Row):
        __slots__ = ("sql_statement",)

        def __init__(self, id: Any = None, user: Any = None, host: Any = None, state: Any = None,
                     database: Any = None, command: Any = None, duration: Any = None,
                     sql_statement: Any = None) -> None:
            super().__init__(id, user, host, state, database, command, duration)
            self.sql_statement = sql_statement

    _DECODER: Any = None
    _CHECKED_DECODER: Any = None
    _SQL_DECODER: Any = None
    _CHECKED_SQL_DECODER: Any = None
    _ROW_TYPES = frozenset({Row, SqlRow})


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


def decode_page(body: bytes, with_sql: bool = False) -> Page | None:
    """The page when it is an object whose `process_list` holds only objects; else None.
    `with_sql`: rows are SqlRows, which hold `sql_statement` too."""
    if _DECODER is None:
        return None
    if with_sql:
        return _decode_with_sql(body)
    try:
        return Page(_CHECKED_DECODER.decode(body).process_list, checked=True)
    except msgspec.ValidationError:
        # Well-formed JSON that the checked types refuse: a field of an unusual type or range
        # (decoded again, unchecked), or a page of another shape (which that refuses too).
        pass
    except (ValueError, RecursionError):  # msgspec's errors are ValueErrors
        return None
    try:
        return Page(_DECODER.decode(body).process_list)
    except (ValueError, RecursionError):
        return None


def _decode_with_sql(body: bytes) -> Page | None:
    """decode_page with the statement; the same rules."""
    try:
        return Page(_CHECKED_SQL_DECODER.decode(body).process_list, checked=True)
    except msgspec.ValidationError:
        pass
    except (ValueError, RecursionError):
        return None
    try:
        return Page(_SQL_DECODER.decode(body).process_list)
    except (ValueError, RecursionError):
        return None


def page_of(values: list[Any], with_sql: bool = False) -> Page:
    """Parsed JSON rows (or rows of a decoded page) as a Page; values that are not objects are left
    out and counted. `with_sql`: objects become SqlRows, which keep `sql_statement`."""
    if all(type(value) in _ROW_TYPES for value in values):
        return Page(values)
    row_type, fields = (SqlRow, SQL_FIELDS) if with_sql else (Row, FIELDS)
    rows = [value if type(value) in _ROW_TYPES else row_type(**{name: value.get(name) for name in fields})
            for value in values if type(value) is dict or type(value) in _ROW_TYPES]
    return Page(rows, skipped=len(values) - len(rows))


def as_mapping(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in FIELDS}
