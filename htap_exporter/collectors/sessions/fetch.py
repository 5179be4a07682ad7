"""The session list (`GET /v3/{project_id}/instances/{instance_id}/htap/process`), page by page.

The API returns no total count, so pages are read with limit=100 until a short or empty page.
The list is a live snapshot: rows shift between pages, hence de-duplication by session id, and a
page that adds no new id ends the walk (a server that ignores `offset` would otherwise loop).
"""

from __future__ import annotations

from typing import NamedTuple

from htap_exporter.cloud.client import ProjectClient
from htap_exporter.cloud.errors import ApiError
from htap_exporter.cloud.paging import PAGE_LIMIT, PageStep, walk_pages
from htap_exporter.collectors.sessions.counting import InstanceStats, Session, SessionCounter
from htap_exporter.collectors.sessions.pages import BadPage, Page, PageDecoder, decode_page
from htap_exporter.config import MetricsConfig

SESSIONS_API = "list_sessions"


class SessionList(NamedTuple):
    stats: InstanceStats
    pages: int
    skipped_rows: int  # rows that were not JSON objects
    sessions: list[Session] | None = None  # the parsed rows, only when the counter kept them


async def list_sessions(client: ProjectClient, instance_id: str, counter: SessionCounter | None = None, *,
                        with_sql: bool = False, decoder: PageDecoder | None = None) -> SessionList:
    """Walk the pages into `counter`, one page at a time: a page's rows are counted and dropped
    before the next page is asked for. Without a counter, one that keeps the parsed rows (for
    callers that want the rows themselves, such as tests). `with_sql`: the rows keep `sql_statement`
    (for the top sessions, which ride on the counter). `decoder`: the fleet's, which knows its label
    values (else each page is decoded on its own, by decode_page)."""
    if counter is None:
        counter = SessionCounter(MetricsConfig(), keep_sessions=True)
    path = f"/v3/{client.project_id}/instances/{instance_id}/htap/process"

    async def read_page(offset: int) -> PageStep:
        page = await _page(client, path, offset, with_sql, decoder)
        new_ids = counter.add(page)
        return PageStep(page.size, new_ids if counter.has_ids else None)

    pages = await walk_pages(read_page, max_pages=client.max_pages)
    if client.budget is not None:
        client.budget.record_poll(instance_id, pages)
    return SessionList(counter.result(), pages, counter.skipped_rows, counter.kept)


async def _page(client: ProjectClient, path: str, offset: int, with_sql: bool, decoder: PageDecoder | None) -> Page:
    request = client.request(path, [("limit", str(PAGE_LIMIT)), ("offset", str(offset))])
    response = await client.call(request, SESSIONS_API, continuing=offset > 0)
    try:
        page = (decode_page(response.body, with_sql) if decoder is None
                else decoder.decode(response.body, with_sql))
    except BadPage as problem:
        raise ApiError("bad_response", str(problem), status=response.status) from None
    if page.size > PAGE_LIMIT:  # before counting: such a page fails the poll whatever it holds
        raise ApiError("bad_response", f"page has {page.size} rows, more than limit={PAGE_LIMIT}",
                       status=response.status)
    return page
