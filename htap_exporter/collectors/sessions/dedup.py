"""De-duplication within a poll: the session list is a live snapshot, rows shift between pages, and
a row whose id was seen on an earlier page of the same poll is not counted again.

Only the ids outlive a page (a poll's memory is one page plus its ids); an id longer than
MAX_ID_LENGTH is remembered by a 16-byte digest, so that a hostile server cannot make that cost
16 KB per row. Rows without a usable id are always counted (they cannot be told apart).
"""

from __future__ import annotations

import hashlib
import math
import operator
from typing import Any

from htap_exporter.collectors.sessions.pages import MAX_ID_LENGTH

_ROW_ID = operator.attrgetter("id")


def session_id_key(value: Any) -> str | bytes | None:
    """What de-duplication compares: the trimmed id (a digest if long); None for no usable id."""
    if type(value) is str:
        text = value.strip()
        if not text:
            return None
        if len(text) > MAX_ID_LENGTH:
            return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        return text
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return session_id_key(str(value))
    return None


class SeenIds:
    """The ids of one poll so far."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: set[str | bytes] = set()

    @property
    def any(self) -> bool:
        """Whether any row so far had an id (pages without ids cannot be told apart)."""
        return bool(self._seen)

    def fresh(self, rows: list[Any], checked: bool) -> tuple[list[Any], int]:
        """The rows whose id was not seen before in this poll (rows without one count), and how
        many new ids they had. `checked`: the ids are known to be strings of at most MAX_ID_LENGTH."""
        seen = self._seen
        # The usual page, at C speed: string ids (str.strip refuses anything else), short (a checked
        # page's are), none in an earlier page, none empty, none repeated. No set of the page's own
        # is built: its ids go straight into the poll's, and back out if the page is not usual
        # (none of them was there before).
        try:
            keys = list(map(str.strip, map(_ROW_ID, rows)))
        except TypeError:
            keys = None
        if (keys is not None and (checked or not keys or max(map(len, keys)) <= MAX_ID_LENGTH)
                and seen.isdisjoint(keys)):
            before = len(seen)
            seen.update(keys)
            if len(seen) - before == len(keys) and "" not in seen:
                return rows, len(keys)
            seen.difference_update(keys)
        ids = list(map(_ROW_ID, rows))
        before = len(seen)
        fresh = []
        for row, raw_id in zip(rows, ids, strict=True):
            key = session_id_key(raw_id)
            if key is None:
                fresh.append(row)
            elif key not in seen:
                seen.add(key)
                fresh.append(row)
        return fresh, len(seen) - before
