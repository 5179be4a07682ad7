"""htap_exporter/web/guards.py: the read deadline, the connection cap (evict the oldest idle one, else 503),
slow readers, and the open-file limit arithmetic, against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest
from aiohttp import web

from htap_exporter.web.guards import ConnectionGuard, GuardedSite, GuardLimits, connection_cap, raise_open_file_limit


class Served:
    def __init__(self, guard: ConnectionGuard, port: int, release: asyncio.Event,
                 arrived: asyncio.Queue[None]) -> None:
        self.guard = guard
        self.port = port
        self.release = release
        self.arrived = arrived  # one item per request that reached the /slow handler

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


async def serve(limits: GuardLimits) -> AsyncIterator[Served]:
    release = asyncio.Event()
    arrived: asyncio.Queue[None] = asyncio.Queue()

    async def slow(request: web.Request) -> web.Response:
        arrived.put_nowait(None)
        await release.wait()
        return web.Response(text="done")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (32 * 1024 * 1024))

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", big)
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.read_timeout)
    await runner.setup()
    guard = ConnectionGuard(limits)
    site = GuardedSite(runner, "127.0.0.1", 0, guard=guard)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Served(guard, port, release, arrived)
    finally:
        release.set()
        await runner.cleanup()


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def small() -> AsyncIterator[Served]:
    async for served in serve(GuardLimits(read_timeout=0.5, max_connections=2, write_stall_timeout=0.5)):
        yield served


async def closed(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return b""


async def test_half_request_is_closed_at_the_read_deadline(small: Served) -> None:
    reader, writer = await small.connect()
    writer.write(b"GET / HTTP/1.1\r\nHost: x")
    assert await closed(reader) == b""
    assert small.guard.timed_out == 1 and small.guard.open_connections == 0
    writer.close()


async def test_a_complete_request_is_served(small: Served) -> None:
    reader, writer = await small.connect()
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await closed(reader)).endswith(b"ok")
    writer.close()


async def test_over_the_cap_the_oldest_idle_connection_makes_room(small: Served) -> None:
    first, first_w = await small.connect()
    second, second_w = await small.connect()
    third, third_w = await small.connect()
    third_w.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await closed(third)).endswith(b"ok")
    assert await closed(first) == b""  # evicted, the oldest
    assert small.guard.evicted == 1
    for writer in (first_w, second_w, third_w):
        writer.close()


async def test_over_the_cap_with_every_connection_busy_the_new_one_gets_503(small: Served) -> None:
    busy = []
    for _ in range(2):
        reader, writer = await small.connect()
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        busy.append((reader, writer))
    for _ in busy:  # both requests reach the handler
        await asyncio.wait_for(small.arrived.get(), 5)
    reader, writer = await small.connect()
    answer = await closed(reader)
    assert answer.startswith(b"HTTP/1.1 503 ") and answer.endswith(b"Too many connections, try again.")
    assert small.guard.refused == 1
    small.release.set()
    for busy_reader, busy_writer in busy:
        assert (await asyncio.wait_for(busy_reader.readuntil(b"done"), 5)).startswith(b"HTTP/1.1 200")
        busy_writer.close()
    writer.close()


async def test_a_client_that_stops_reading_is_dropped(small: Served) -> None:
    reader, writer = await small.connect()
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0)
    # Never read: 32 MiB cannot fit in the socket buffers, writing pauses, the stall timer fires.
    async def dropped() -> bool:
        while small.guard.open_connections:
            await asyncio.sleep(0.05)
        return True
    assert await asyncio.wait_for(dropped(), 10)
    writer.close()


@pytest.mark.parametrize("requested, open_files, expected", [
    (512, 1 << 20, 512), (512, 1024, 480), (512, 100, 18), (512, 50, 16), (512, -1, 512), (10, 1024, 10)])
def test_connection_cap_fits_the_open_file_limit(requested, open_files, expected):
    assert connection_cap(requested, open_files) == expected


def test_raise_open_file_limit():
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
        before, now = raise_open_file_limit()
        assert before == min(soft, 256) and now == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert now == hard or hard == resource.RLIM_INFINITY
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
