"""A project's API client: one signed call with its credentials, auth gate and request budget.

Every collector and discovery call through it, so that a project has one token, one gate for
rejected credentials and one budget, whatever asks.
"""

from __future__ import annotations

import logging

from yarl import URL

from htap_exporter.cloud.auth import Authenticator, OutgoingRequest
from htap_exporter.cloud.budget import ApiBudget
from htap_exporter.clock import RateLimiter
from htap_exporter.cloud.errors import ApiError
from htap_exporter.cloud.paging import REQUEST_HEADERS
from htap_exporter.cloud.transport import Prepare, Response, Transport

log = logging.getLogger(__name__)


class ProjectClient:
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

    def stretch(self, poll_interval: float) -> float:
        """How much longer than configured every interval of this project is (1: as configured)."""
        budget = self.budget
        return 1.0 if budget is None else budget.stretch(poll_interval)

    def request(self, path: str, params: list[tuple[str, str]] | None = None) -> OutgoingRequest:
        """A GET of this project's API at `path` (which starts with /v3/{project_id})."""
        return OutgoingRequest(method="GET", endpoint=self._endpoint, path=path, params=params or [],
                               headers=dict(REQUEST_HEADERS))

    @property
    def project_id(self) -> str:
        return self._project_id

    @property
    def max_pages(self) -> int:
        return self._max_pages

    async def call(self, request: OutgoingRequest, api: str, *, continuing: bool = False) -> Response:
        """Send with credentials; on a 401 the authenticator may renew them, then one retry.
        `continuing`: the request continues a walk under way (a next page): it gets a slot first."""
        sent_headers: dict[str, str] = {}

        async def prepare() -> tuple[URL, dict[str, str]]:
            sent_headers.clear()
            url, headers = await self._auth.prepare(request)
            sent_headers.update(headers)
            return url, headers

        async with self._auth.gate.attempt():
            try:
                return await self._send(request, prepare, api, continuing)
            except ApiError as problem:
                # Empty sent_headers: the 401 came from IAM while preparing, not from this API.
                if (problem.status != 401 or not sent_headers
                        or not await self._auth.unauthorized(dict(sent_headers))):
                    raise
            return await self._send(request, prepare, api, continuing)

    async def _send(self, request: OutgoingRequest, prepare: Prepare, api: str, continuing: bool) -> Response:
        return await self._transport.send_prepared(api, request.method, prepare, request.body,
                                                   limiter=self._limiter, continuing=continuing)
