"""The session list, `GET /v3/{project_id}/instances/{instance_id}/htap/process`, paginated by
`limit` (1..100) and `offset`, `DBS.200022` for an unknown instance. Its fault target is the
instance id (or `list_sessions` for every instance)."""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

from aiohttp import web

from htap_exporter.simulator import faults
from htap_exporter.simulator.faults import Answer, Call, Fault
from htap_exporter.simulator.replies import error, page_window
from htap_exporter.simulator.routing import Api
from htap_exporter.simulator.state import Observed, SimState

PATH = "/v3/{project_id}/instances/{instance_id}/htap/process"


def apis(sim: SimState) -> list[Api]:
    return [Api("GET", PATH, "list_sessions", answer, check=partial(check, sim), count=count, faults=FAULTS,
                specific=("instance_id",))]


def count(observed: Observed, request: web.Request) -> None:
    observed.request(request.match_info["instance_id"])
    observed.api_request()


def check(sim: SimState, request: web.Request) -> Call | web.StreamResponse:
    window = page_window(request)
    if isinstance(window, web.Response):
        return window
    limit, offset = window
    instance = sim.instances.get(request.match_info["instance_id"])
    if request.match_info["project_id"] != sim.project_id or instance is None:
        return error(400, "DBS.200022", "Instance not found.")
    return Call(request, limit, offset, instance)


async def answer(call: Call) -> web.StreamResponse:
    instance = call.instance
    assert instance is not None
    if instance.static_pages is not None and instance.fixed_rows is None:
        page = instance.static_pages.get((call.offset, call.limit))
        if page is not None:
            return web.Response(body=page, content_type="application/json")
    rows = instance.rows(time.time())
    return web.json_response({"process_list": rows[call.offset:call.offset + call.limit]})


# --- the faults only a list of rows can have ---------------------------------------------------


async def ignore_offset(fault: Fault, call: Call) -> web.StreamResponse | None:
    """Always the first page, whatever the offset."""
    assert call.instance is not None
    rows = call.instance.rows(time.time())
    return web.json_response({"process_list": rows[:call.limit]})


async def too_many_rows(fault: Fault, call: Call) -> web.StreamResponse | None:
    return web.json_response({"process_list": [{"id": str(i), "command": "Sleep", "duration": 1}
                                               for i in range(call.limit + 1)]})


async def endless(fault: Fault, call: Call) -> web.StreamResponse | None:
    """Never a short page, never a repeated id."""
    if fault.field_bytes:
        return web.Response(body=_padded_page(call.offset, call.limit, fault.field_bytes),
                            content_type="application/json")
    return web.json_response({"process_list": [{"id": str(call.offset + i), "command": "Sleep", "duration": 1}
                                               for i in range(call.limit)]})


async def huge_rows(fault: Fault, call: Call) -> web.StreamResponse | None:
    """The instance's own rows, every text field `field_bytes` long."""
    assert call.instance is not None
    rows = call.instance.rows(time.time())[call.offset:call.offset + call.limit]
    return web.json_response({"process_list": [_padded_row(row, fault.field_bytes) for row in rows]})


FAULTS: dict[str, Answer] = {**faults.listing("process_list"),
                             "wrong_shape": faults.document({"processes": []}),
                             "ignore_offset": ignore_offset, "too_many_rows": too_many_rows, "endless": endless,
                             "huge_rows": huge_rows}


def _padded_row(row: dict[str, Any], size: int) -> dict[str, Any]:
    """The row with its text fields grown to `size` characters; the original value stays at the end,
    so rows that differed still differ (e.g. two users stay two users after cutting)."""
    padded = dict(row)
    for key in ("user", "database", "host", "sql_statement"):
        tail = str(row.get(key, ""))
        padded[key] = "x" * max(0, size - len(tail)) + tail
    return padded


def _padded_page(offset: int, limit: int, size: int) -> bytes:
    padding = "p" * size
    rows = [{"id": str(offset + i), "user": padding + str(offset + i), "database": padding,
             "host": padding, "sql_statement": padding, "command": "Query", "duration": 1} for i in range(limit)]
    return json.dumps({"process_list": rows}).encode()
