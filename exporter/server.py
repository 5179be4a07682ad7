"""HTTP endpoints. Reads the store; never calls the cloud API."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from exporter import __version__
from exporter.metrics import SelfMetrics
from exporter.store import Store

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"

ReloadHook = Callable[[], Awaitable[str | None]]  # returns None on success, else the error


@dataclass
class ServerState:
    store: Store
    self_metrics: SelfMetrics
    is_ready: Callable[[], bool]
    reload: ReloadHook
    telemetry_path: str = "/metrics"


def make_app(state: ServerState) -> web.Application:
    app = web.Application()

    async def metrics(request: web.Request) -> web.Response:
        body = state.store.render() + state.self_metrics.render()
        return web.Response(body=body, headers={"Content-Type": TEXT_FORMAT})

    async def landing(request: web.Request) -> web.Response:
        path = html.escape(state.telemetry_path)
        page = (
            "<!doctype html><html><head><title>HTAP Exporter</title></head><body>"
            f"<h1>HTAP Exporter</h1><p>Version {html.escape(__version__)}.</p>"
            f'<ul><li><a href="{path}">Metrics</a></li>'
            '<li><a href="/-/healthy">Health</a></li><li><a href="/-/ready">Readiness</a></li></ul>'
            "</body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="Healthy.\n")

    async def ready(request: web.Request) -> web.Response:
        if state.is_ready():
            return web.Response(text="Ready.\n")
        return web.Response(status=503, text="Not ready: the first poll of every instance has not ended yet.\n")

    async def reload(request: web.Request) -> web.Response:
        problem = await state.reload()
        if problem is None:
            return web.Response(text="Reloaded.\n")
        return web.Response(status=500, text=f"Reload failed, the previous configuration stays: {problem}\n")

    app.router.add_get(state.telemetry_path, metrics)
    app.router.add_get("/", landing)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    return app
