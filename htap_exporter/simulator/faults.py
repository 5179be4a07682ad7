"""Fault injection: what a fault is, where it is set, and how each kind answers.

A fault is set on a target (an instance id, a TaurusDB id, an API family's name such as
`list_instances`, or `*` for every request) and lasts until cleared or for `remaining` requests.
An API family answers a fault through its table, kind -> answer; an answer returns the faulty
response, or None to go on answering normally (after a delay, say). A kind missing from a
family's table is used up and otherwise ignored there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aiohttp import web

from htap_exporter.simulator.instances import SimInstance
from htap_exporter.simulator.replies import error

FAULT_KINDS = ("status", "throttle", "delay", "garbage", "html", "wrong_shape", "ignore_offset",
               "drop", "oversize", "too_many_rows", "endless", "not_list", "echo", "huge_rows")
EVERYWHERE = "*"


@dataclass
class Fault:
    kind: str
    status: int = 500
    error_code: str = "DBS.05000000"
    error_msg: str = "Internal server error."
    retry_after: str | None = None
    seconds: float = 0.0
    size: int = 9 * 1024 * 1024
    remaining: int | None = None  # None: until cleared
    part: list[int] | None = None  # echo: only [start, end) of each echoed header value and of the body
    # huge_rows, endless: bytes of each row's user, database, host and sql_statement (0: normal rows)
    field_bytes: int = 0

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Fault:
        kind = document.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        fault = cls(kind=kind)
        for key in ("status", "error_code", "error_msg", "retry_after", "seconds", "size", "remaining", "part",
                    "field_bytes"):
            if key in document:
                setattr(fault, key, document[key])
        if kind == "echo" and "status" not in document:
            fault.status, fault.error_code = 400, "DBS.280001"
        if kind == "throttle" and "status" not in document:
            fault.status, fault.error_code = 429, "APIG.0308"
            fault.error_msg = ("The throttling threshold has been reached:"
                               " policy user over ratelimit,limit:10,time:1 minute")
        return fault


class Faults(dict[str, Fault]):
    """The faults set, by target."""

    def take(self, targets: Iterable[str]) -> Fault | None:
        """The fault for the first target that has one (each target before `*`), one use of it spent."""
        for target in targets:
            for key in (target, EVERYWHERE):
                fault = self.get(key)
                if fault is not None:
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            del self[key]
                    return fault
        return None


@dataclass
class Call:
    """A cloud API request past its checks: what its handler and a fault's answer work with."""

    request: web.Request
    limit: int = 100
    offset: int = 0
    instance: SimInstance | None = None  # the instance the path names, for per-instance APIs


Answer = Callable[[Fault, Call], Awaitable[web.StreamResponse | None]]


async def status(fault: Fault, call: Call) -> web.StreamResponse | None:
    """The fault's error, with its `Retry-After` if it has one."""
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
    return error(fault.status, fault.error_code, fault.error_msg, headers)


async def bare_status(fault: Fault, call: Call) -> web.StreamResponse | None:
    """The fault's error, never with `Retry-After` (discovery and IAM answer so)."""
    return error(fault.status, fault.error_code, fault.error_msg)


async def delay(fault: Fault, call: Call) -> web.StreamResponse | None:
    await asyncio.sleep(fault.seconds)
    return None


async def html(fault: Fault, call: Call) -> web.StreamResponse | None:
    """A proxy's error page instead of the API's JSON."""
    return web.Response(status=fault.status if fault.status != 500 else 502,
                        text="<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
                        content_type="text/html")


async def echo(fault: Fault, call: Call) -> web.StreamResponse | None:
    """Like a careless gateway: the request's headers and body reflected in error_msg, as JSON text
    (so a secret arrives JSON-escaped), or only a slice of each when `part` is set."""
    request = call.request
    headers = dict(request.headers)
    body = (await request.read()).decode("utf-8", errors="replace")
    if fault.part is not None:
        start, end = fault.part
        headers = {name: text[start:end] for name, text in headers.items()}
        body = body[start:end]
    echoed = json.dumps({"body": body, "headers": headers, "method": request.method, "path": request.path_qs})
    return error(fault.status, fault.error_code, f"Bad request: {echoed}")


async def drop(fault: Fault, call: Call) -> web.StreamResponse | None:
    """The connection closed without an answer."""
    if call.request.transport is not None:
        call.request.transport.close()
    raise asyncio.CancelledError()


def body(content: bytes) -> Answer:
    """Always these bytes as JSON (e.g. cut short)."""
    async def answer(fault: Fault, call: Call) -> web.StreamResponse | None:
        return web.Response(body=content, content_type="application/json")
    return answer


def document(content: Any) -> Answer:
    """Always this JSON document (e.g. the list under a wrong name)."""
    async def answer(fault: Fault, call: Call) -> web.StreamResponse | None:
        return web.json_response(content)
    return answer


def oversize(list_key: str) -> Answer:
    """An empty list padded with `size` bytes: an answer too big to read."""
    async def answer(fault: Fault, call: Call) -> web.StreamResponse | None:
        padding = "x" * max(0, fault.size)
        return web.Response(body=json.dumps({list_key: [], "padding": padding}).encode(),
                            content_type="application/json")
    return answer


# What any API answers to these kinds, whatever its body looks like.
COMMON: Mapping[str, Answer] = MappingProxyType({"status": status, "throttle": status, "delay": delay, "html": html,
                                                 "echo": echo, "drop": drop})


def listing(list_key: str) -> dict[str, Answer]:
    """The table of a list API whose answer is `{list_key: [...]}`: the common kinds, plus broken
    JSON, the list under a wrong name, an object instead of the list, and an oversized answer."""
    return {**COMMON,
            "garbage": body(f'{{"{list_key}": [{{"id": "1", "user": '.encode()),
            "wrong_shape": document({"unexpected": []}),
            "not_list": document({list_key: {"id": "1"}}),
            "oversize": oversize(list_key)}
