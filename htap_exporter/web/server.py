"""HTTP endpoints. Reads the store; never calls the cloud API."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Sequence

from aiohttp import web

from htap_exporter import __version__
from htap_exporter.exposition.negotiation import (OPENMETRICS_EOF, OPENMETRICS_FORMAT, TEXT_FORMAT, GzipCache, compress,
                             filter_names, gzip_accepted, select_families, wants_openmetrics)
from htap_exporter.web.landing import render_landing
from htap_exporter.exposition.selfmetrics import SelfMetrics
from htap_exporter.web.sending import BodySender, Part
from htap_exporter.exposition.store import Store
from htap_exporter.web.access import WebAccess

ReloadHook = Callable[[], Awaitable[str | None]]  # returns None on success, else the error

# What an HTML form can send without a CORS preflight: a page on another site could otherwise
# make a visitor's browser reload the exporter.
FORM_CONTENT_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
RELOAD_HOW = "reload with: curl -X POST <exporter>/-/reload (or send SIGHUP)"


@dataclass
class ServerState:
    store: Store
    self_metrics: SelfMetrics
    is_ready: Callable[[], bool]
    reload: ReloadHook
    telemetry_path: str = "/metrics"
    access: WebAccess = field(default_factory=lambda: WebAccess(None))
    now: Callable[[], float] = time.time
    sender: BodySender = field(default_factory=BodySender)


async def _body_parts(store: Store, gzip_cache: GzipCache, *, openmetrics: bool, names: list[str], gzipped: bool,
                      tail: bytes, eof: bytes, as_pieces: bool) -> tuple[Sequence[Part], int]:
    """A scrape's body and its length: the store's families (only `names` when given), the
    self-metrics (`tail`), the end marker; gzipped when asked. `as_pieces`: the sender can write
    the families as the store's pieces, unjoined."""
    parts: tuple[bytes, ...]
    if as_pieces and not names and not gzipped:
        pieces, size = await store.pieces(openmetrics=openmetrics)
        return (*pieces, tail + eof), size + len(tail) + len(eof)
    if names:
        parts = (select_families(store.families(openmetrics=openmetrics), names) + filter_names(tail, names) + eof,)
        if gzipped:
            parts = (await compress(parts[0]),)
    elif gzipped:
        # The store's part is compressed once per generation and shared; only the self-metrics
        # are compressed per scrape.
        parts = await gzip_cache.body((store.generation, openmetrics), lambda: store.body(openmetrics=openmetrics),
                                      tail + eof)
    else:
        parts = (*await store.body(openmetrics=openmetrics), tail + eof)
    return parts, sum(map(len, parts))


def make_app(state: ServerState) -> web.Application:
    app = web.Application(middlewares=[state.access.middleware])
    app.on_response_prepare.append(state.access.add_headers)
    gzip_cache = GzipCache()

    async def metrics(request: web.Request) -> web.StreamResponse:
        openmetrics = wants_openmetrics(request.headers.get("Accept"))
        names = request.query.getall("name[]", [])
        eof = OPENMETRICS_EOF if openmetrics else b""
        tail = state.self_metrics.render(openmetrics=openmetrics)
        response = web.StreamResponse(headers={"Content-Type": OPENMETRICS_FORMAT if openmetrics else TEXT_FORMAT,
                                               "Vary": "Accept, Accept-Encoding"})
        gzipped = gzip_accepted(request.headers.get("Accept-Encoding"))
        if gzipped:
            response.headers["Content-Encoding"] = "gzip"
        parts, size = await _body_parts(state.store, gzip_cache, openmetrics=openmetrics, names=names,
                                        gzipped=gzipped, tail=tail, eof=eof,
                                        as_pieces=request.method != "HEAD" and state.sender.sends_pieces(request))
        # Written part by part: the store's bytes (megabytes with many instances) are sent as
        # cached, never copied into a new body per scrape.
        response.content_length = size
        await response.prepare(request)
        if request.method != "HEAD":
            await state.sender.send(request, response, parts, size)
        await response.write_eof()
        return response

    async def landing(request: web.Request) -> web.Response:
        statuses = state.store.statuses()
        page = render_landing(version=__version__, telemetry_path=state.telemetry_path, statuses=statuses,
                              now=state.now(), top_sessions={status.instance_id: status.top_sessions
                                                             for status in statuses if status.top_sessions})
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="Healthy.\n")

    async def ready(request: web.Request) -> web.Response:
        if state.is_ready():
            return web.Response(text="Ready.\n")
        return web.Response(status=503, text="Not ready: the first poll of every instance has not ended yet.\n")

    async def reload(request: web.Request) -> web.Response:
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/").lower() != f"{request.scheme}://{request.host}".lower():
            return web.Response(status=403, text=f"Forbidden: a reload from another origin is refused; {RELOAD_HOW}\n")
        media_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type in FORM_CONTENT_TYPES:
            return web.Response(status=415, text=f"Unsupported Media Type: a form cannot reload; {RELOAD_HOW}\n")
        problem = await state.reload()
        if problem is None:
            return web.Response(text="Reloaded.\n")
        return web.Response(status=500, text=f"Reload failed, the previous configuration stays: {problem}\n")

    async def stop_sending(app: web.Application) -> None:
        state.sender.close()

    app.on_shutdown.append(stop_sending)
    app.router.add_get(state.telemetry_path, metrics)
    app.router.add_get("/", landing)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    return app
