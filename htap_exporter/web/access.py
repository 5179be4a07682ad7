"""Who may use the HTTP endpoints: the web config's rate limit, client certificate names, basic auth
and response headers, applied to every request as one aiohttp middleware."""

from __future__ import annotations

import ipaddress
from typing import Any, Awaitable, Callable

from aiohttp import web

from htap_exporter.clock import Clock, RateLimiter
from htap_exporter.web.basicauth import RETRY_AFTER_SECONDS, BasicAuthVerifier, Busy, parse_basic_auth
from htap_exporter.web.webconfig import RateLimit, WebConfig, WebConfigWatcher

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Container and kubelet probes carry no credentials, and must never wait for a bcrypt check.
OPEN_PATHS = frozenset({"/-/healthy", "/-/ready"})
REALM = 'Basic realm="htap-exporter", charset="UTF-8"'


def peer_sans(peercert: dict[str, Any] | None) -> set[str]:
    """The subject alternative names of a verified client certificate, written as Go writes them."""
    names: set[str] = set()
    for kind, value in (peercert or {}).get("subjectAltName", ()):
        if kind == "IP Address":
            try:
                value = str(ipaddress.ip_address(value.strip()))
            except ValueError:
                pass
        if kind in ("DNS", "email", "IP Address", "URI"):
            names.add(value)
    return names


class WebAccess:
    def __init__(self, watcher: WebConfigWatcher | None, verifier: BasicAuthVerifier | None = None,
                 clock: Clock | None = None) -> None:
        self.watcher = watcher
        self.verifier = verifier or BasicAuthVerifier()
        self._clock = clock or Clock()
        self._bucket: RateLimiter | None = None
        self._bucket_limit: RateLimit | None = None

    def config(self) -> WebConfig | None:
        # The file is re-checked by the watcher's own task (at most once a second), never here.
        return self.watcher.current if self.watcher is not None else None

    def _allow_rate(self, limit: RateLimit | None) -> bool:
        if limit is None:
            return True
        if self._bucket is None or self._bucket_limit != limit:
            # `rate_limit` as the toolkit means it: on average one request per interval, bursts up to `burst`.
            self._bucket, self._bucket_limit = RateLimiter.one_per(limit.interval, self._clock, limit.burst), limit
        return self._bucket.allow()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        config = self.config()
        if config is None:
            return await handler(request)
        if not self._allow_rate(config.rate_limit):
            return web.Response(status=429, text="Too Many Requests\n")
        tls = config.tls
        if tls is not None and tls.client_allowed_sans is not None:
            # Go checks this in the handshake; Python's ssl has no hook there, so the request is refused.
            if not peer_sans(request.transport.get_extra_info("peercert") if request.transport else None) \
                    & set(tls.client_allowed_sans):
                return web.Response(status=403, text="Forbidden: the client certificate has no allowed name\n")
        if config.users and request.path not in OPEN_PATHS:
            credentials = parse_basic_auth(request.headers.get("Authorization"))

            def client_gone() -> bool:
                transport = request.transport
                return transport is None or transport.is_closing()

            try:
                allowed = credentials is not None and await self.verifier.verify(config.users, *credentials,
                                                                                  client_gone=client_gone)
            except Busy:
                return web.Response(status=503, text="Service Unavailable: too many logins being checked\n",
                                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            if not allowed:
                return web.Response(status=401, text="Unauthorized\n", headers={"WWW-Authenticate": REALM})
        return await handler(request)

    async def add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """on_response_prepare: the configured headers on every answer, errors and 404s included."""
        if self.watcher is None:
            return
        for name, value in self.watcher.current.headers:
            response.headers[name] = value
