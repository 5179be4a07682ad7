"""One page walk for every list API: offset/limit pages until the list ends, never forever.

The cloud's lists are live snapshots: rows shift between pages while they are read, so callers
de-duplicate by id and report how many rows of a page were new; a page that adds nothing ends
the walk (a server that ignores `offset` would otherwise loop). A list that gives a total ends when
the offset reaches it (its pages may be capped below `limit`: a short page is not the end); a list
without one ends at its first short page. A walk that has not ended after `max_pages` is refused.
"""

from __future__ import annotations

from typing import Awaitable, Callable, NamedTuple

from htap_exporter.cloud.errors import ApiError

PAGE_LIMIT = 100
# Every request to the cloud API carries these (the API answers errors in English with them).
REQUEST_HEADERS = {"Content-Type": "application/json", "X-Language": "en-us"}


class PageStep(NamedTuple):
    """What a walk needs to know of one page it read."""

    size: int  # rows on the page
    new: int | None  # rows not seen before in this walk; None when the rows carry no ids to tell
    total: int | None = None  # the list's total, when the API gives one


async def walk_pages(read_page: Callable[[int], Awaitable[PageStep]], *, max_pages: int, limit: int = PAGE_LIMIT,
                     what: str = "", items: str = "rows", refuse_repeats: bool = False) -> int:
    """Call `read_page(offset)` until the list ends; returns the number of pages read. `what`
    prefixes the errors (the API's name), `items` names what the rows are. `refuse_repeats`: a
    page that adds nothing before the total is reached is a broken server (one ignoring `offset`),
    not the end of the list."""
    prefix = f"{what}: " if what else ""
    offset = 0
    for number in range(1, max_pages + 1):
        step = await read_page(offset)
        if step.size > limit:
            raise ApiError("bad_response", f"{prefix}page has {step.size} {items}, more than limit={limit}")
        offset += step.size
        ended = offset >= step.total if step.total is not None else step.size < limit
        if ended or step.size == 0:
            return number
        if step.new == 0:
            if refuse_repeats:
                raise ApiError("bad_response", f"{prefix}the page at offset {offset - step.size} repeats"
                                               f" {items} already read")
            return number
    raise ApiError("bad_response", f"{prefix}pagination did not end after {max_pages} pages of {limit}")
