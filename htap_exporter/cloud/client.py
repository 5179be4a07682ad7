"""The HTAP session-list API: pagination, de-duplication, response validation.

The API returns no total count, so pages are read with limit=100 until a short or empty page.
The list is a live snapshot: rows shift between pages, hence de-duplication by session id, and a
page that adds no new id ends the walk (a server that ignores `offset` would otherwise loop).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from yarl import URL

from htap_exporter.cloud.auth import Authenticator, OutgoingRequest
from htap_exporter.cloud.budget import ApiBudget
from htap_exporter.clock import RateLimiter
from htap_exporter.config import MetricsConfig
from htap_exporter.collectors.sessions.pages import Page, decode_page, page_of
from htap_exporter.collectors.sessions.counting import Session, SessionCounter, InstanceStats
from htap_exporter.cloud.transport import ApiError, Prepare, Response, Transport

PAGE_LIMIT = 100
SESSIONS_API = "list_sessions"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionList:
    stats: InstanceStats
    pages: int
    skipped_rows: int  # rows that were not JSON objects
    sessions: list[Session] | None = None  # the parsed rows, only when the counter kept them


class HtapApi:
    """One project's view of the API: its endpoint, credentials and optional rate limit."""

    def __init__(self, *, endpoint: str, project_id: str, auth: Authenticator, transport: Transport,
                 max_pages: int, limiter: RateLimiter | None = None) -> None:
        self._endpoint = URL(endpoint)
        self._project_id = project_id
        self._auth = auth
        self._transport = transport
        self._max_pages = max_pages
        self._limiter = limiter

    @property
    def endpoint(self) -> URL:
        return self._endpoint

    @property
    def budget(self) -> ApiBudget | None:
        return self._limiter if isinstance(self._limiter, ApiBudget) else None

    def poll_interval(self, configured: float) -> float:
        """The interval this project's budget can sustain (the configured one, or longer)."""
        budget = self.budget
        return configured if budget is None else budget.poll_interval(configured)

    async def list_sessions(self, instance_id: str, counter: SessionCounter | None = None) -> SessionList:
        """Walk the pages into `counter`, one page at a time: a page's rows are counted and dropped
        before the next page is asked for. Without a counter, one that keeps the parsed rows (for
        callers that want the rows themselves, such as tests)."""
        if counter is None:
            counter = SessionCounter(MetricsConfig(), keep_sessions=True)
        offset = 0
        for number in range(1, self._max_pages + 1):
            page = await self._page(instance_id, offset)
            new_ids = counter.add(page)
            if page.size < PAGE_LIMIT or (new_ids == 0 and counter.has_ids):
                if self.budget is not None:
                    self.budget.record_poll(instance_id, number)
                return SessionList(counter.result(), number, counter.skipped_rows, counter.kept)
            offset += page.size
            del page  # the next page is fetched without this one in memory
        raise ApiError("bad_response", f"pagination did not end after {self._max_pages} pages of {PAGE_LIMIT}")

    async def _page(self, instance_id: str, offset: int) -> Page:
        request = OutgoingRequest(
            method="GET",
            endpoint=self._endpoint,
            path=f"/v3/{self._project_id}/instances/{instance_id}/htap/process",
            params=[("limit", str(PAGE_LIMIT)), ("offset", str(offset))],
            headers={"Content-Type": "application/json", "X-Language": "en-us"},
        )
        response = await self.call(request)
        page = decode_page(response.body) or _generic_page(response)
        if page.size > PAGE_LIMIT:
            raise ApiError("bad_response", f"page has {page.size} rows, more than limit={PAGE_LIMIT}",
                           status=response.status)
        return page

    async def call(self, request: OutgoingRequest, api: str = SESSIONS_API) -> Response:
        """Send with credentials; on a 401 the authenticator may renew them, then one retry."""
        sent_headers: dict[str, str] = {}

        async def prepare() -> tuple[URL, dict[str, str]]:
            sent_headers.clear()
            url, headers = await self._auth.prepare(request)
            sent_headers.update(headers)
            return url, headers

        async with self._auth.gate.attempt():
            try:
                return await self._send(request, prepare, api)
            except ApiError as problem:
                # Empty sent_headers: the 401 came from IAM while preparing, not from this API.
                if (problem.status != 401 or not sent_headers
                        or not await self._auth.unauthorized(dict(sent_headers))):
                    raise
            return await self._send(request, prepare, api)

    async def _send(self, request: OutgoingRequest, prepare: Prepare, api: str) -> Response:
        return await self._transport.send_prepared(api, request.method, prepare, request.body,
                                                   limiter=self._limiter)


def _generic_page(response: Response) -> Page:
    """A page that msgspec did not decode (or without msgspec): parsed by the standard library."""
    document = response.json()
    if not isinstance(document, dict):
        raise ApiError("bad_response", "response is not a JSON object", status=response.status)
    rows = document.get("process_list")
    if rows is None:
        raise ApiError("bad_response", "response has no process_list", status=response.status)
    if not isinstance(rows, list):
        raise ApiError("bad_response", "process_list is not a list", status=response.status)
    return page_of(rows)
