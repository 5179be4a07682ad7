"""Big bodies leave from a thread on plain TCP, through the transport in slices otherwise; a reader
that stops is dropped; a stop unblocks every sending thread; the store joins big bodies once."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from htap_exporter.exposition import store as store_module
from htap_exporter.exposition.writer import InstanceIdentity
from tests.fakes import make_store
from tests.fakes import PollState, render_instance
from htap_exporter.web.sending import SEND_BUFFER_BYTES, BodySender, send_buffer_size, widen_send_buffer
from htap_exporter.web.server import ServerState, make_app
from htap_exporter.exposition.store import Pieces, Store
from tests.webtls import Pki

BIG = b"".join(b'htap_sessions{instance_id="%d",instance_name="n"} 1.0\n' % i for i in range(80_000))  # ~4 MB
TAIL = b"# HELP htap_exporter_build_info V.\n# TYPE htap_exporter_build_info gauge\nhtap_exporter_build_info 1.0\n"


class BigStore:
    generation = 1

    def __init__(self, body: bytes = BIG) -> None:
        self.data = body

    def render(self, openmetrics: bool = False) -> bytes:
        return self.data

    async def body(self, openmetrics: bool = False) -> list[bytes]:
        return [self.data]

    async def pieces(self, openmetrics: bool = False) -> tuple[list[bytes | Pieces], int]:
        """As the store hands a big family over: its lines unjoined, more than one send takes."""
        return [Pieces.of(self.data.splitlines(keepends=True))], len(self.data)

    def statuses(self) -> list:
        return []


class Tail:
    def render(self, openmetrics: bool = False) -> bytes:
        return TAIL


async def serve(sender: BodySender, body: bytes = BIG, tls: ssl.SSLContext | None = None) -> TestServer:
    async def reload() -> str | None:
        return None

    state = ServerState(store=BigStore(body), self_metrics=Tail(), is_ready=lambda: True,  # type: ignore[arg-type]
                        reload=reload, sender=sender)
    server = TestServer(make_app(state))
    await server.start_server(ssl=tls)
    return server


def two_scrapes_on_one_connection(port: int) -> list[bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        bodies = []
        for _ in range(2):
            connection.request("GET", "/metrics")
            answer = connection.getresponse()
            assert answer.status == 200
            bodies.append(answer.read())
            assert not answer.will_close
        return bodies
    finally:
        connection.close()


async def until(condition, seconds: float = 10.0) -> None:
    """Wait for a condition the code under test reaches on its own (no event to wait for)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_a_big_body_leaves_from_a_thread_and_the_connection_stays_usable():
    sender = BodySender()
    server = await serve(sender)
    try:
        bodies = await asyncio.to_thread(two_scrapes_on_one_connection, server.port)
        assert bodies == [BIG + TAIL, BIG + TAIL]  # exact framing: the second response parsed whole
        assert sender.threaded == 2
        async with aiohttp.ClientSession() as session:
            async with session.head(server.make_url("/metrics"), headers={"Accept-Encoding": "identity"}) as answer:
                assert answer.status == 200 and answer.content_length == len(BIG + TAIL)
        assert sender.threaded == 2  # HEAD sends no body
    finally:
        await server.close()


async def test_small_bodies_and_tls_go_through_the_transport(tmp_path: Path):
    sender = BodySender()
    server = await serve(sender, body=BIG[:10_000])
    try:
        assert await asyncio.to_thread(two_scrapes_on_one_connection, server.port) == [BIG[:10_000] + TAIL] * 2
        assert sender.threaded == 0
    finally:
        await server.close()

    pki = Pki.create(tmp_path)
    cert, key = pki.issue_server("localhost")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = await serve(sender, tls=tls)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"https://localhost:{server.port}/metrics"
            async with session.get(url, ssl=pki.client_context(), headers={"Accept-Encoding": "identity"}) as answer:
                assert await answer.read() == BIG + TAIL
        assert sender.threaded == 0  # only the transport can encrypt: sent in slices
    finally:
        await server.close()


async def test_the_transport_path_sends_the_same_bytes_when_every_thread_is_busy():
    sender = BodySender(threads=0)
    server = await serve(sender)
    try:
        assert await asyncio.to_thread(two_scrapes_on_one_connection, server.port) == [BIG + TAIL] * 2
        assert sender.threaded == 0
    finally:
        await server.close()


def stalled_reader(port: int) -> socket.socket:
    """A client that asks for /metrics, then reads nothing (a tiny receive window fills at once)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def read_to_the_end(sock: socket.socket) -> None:
    """Whatever is left, until EOF or a reset; a timeout (10 s) when the connection stays open."""
    sock.settimeout(10)
    try:
        while sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass


async def test_a_reader_that_stops_is_dropped_and_its_thread_freed():
    sender = BodySender(stall_timeout=0.5)
    server = await serve(sender, body=BIG * 4)
    sock = stalled_reader(server.port)
    try:
        await until(lambda: sender.threaded == 1)
        await until(lambda: not sender._sockets)
        # the connection was closed: reading what was sent ends in EOF or a reset, not a hang. Read
        # in a thread: the close itself is a callback of the event loop, which a blocking read here
        # would hold.
        await asyncio.to_thread(read_to_the_end, sock)
        assert await asyncio.to_thread(two_scrapes_on_one_connection, server.port) == [BIG * 4 + TAIL] * 2
    finally:
        sock.close()
        await server.close()


async def test_a_stop_unblocks_a_thread_stuck_on_a_slow_reader():
    sender = BodySender(stall_timeout=300)
    server = await serve(sender, body=BIG * 4)
    sock = stalled_reader(server.port)
    try:
        await until(lambda: len(sender._sockets) == 1)
        started = asyncio.get_running_loop().time()
        sender.close()
        await until(lambda: not sender._sockets)
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        sock.close()
        await server.close()


# --- the store's join --------------------------------------------------------------------------------


def flat(parts: list) -> bytes:
    """A body handed over as parts (bytes, or a family's pieces) as the bytes it sends."""
    return b"".join(part if isinstance(part, bytes) else b"".join(part.lines) for part in parts)


def filled_store(instances: int) -> Store:
    store = make_store()
    for index in range(instances):
        identity = InstanceIdentity(f"id{index}", f"name{index}", "p", "r")
        store.put(identity.instance_id, render_instance(identity, PollState(up=False)))
    return store


async def test_concurrent_scrapes_share_one_join_in_a_thread(monkeypatch):
    monkeypatch.setattr(store_module, "THREAD_PIECES", 1)
    joins = []

    class Counting(ThreadPoolExecutor):
        def submit(self, function, *args, **kwargs):
            joins.append(function)
            return super().submit(function, *args, **kwargs)

    store = filled_store(50)
    store._joiner = Counting(max_workers=1)
    bodies = await asyncio.gather(*(store.body() for _ in range(5)))
    assert len(joins) == 1 and all(body == bodies[0] for body in bodies)
    assert b"".join(bodies[0]) == store.render()
    again = await store.body()  # nothing changed: the same joined parts, no new join
    assert len(joins) == 1 and all(a is b for a, b in zip(again, bodies[0]))
    openmetrics = await store.body(openmetrics=True)
    assert b"".join(openmetrics) == store.render(openmetrics=True)

    # a change while the body is taken (a column at a time here) and joined: that scrape gets the
    # body it started with, the next the new one
    monkeypatch.setattr(store_module, "SNAPSHOT_STEP_SLOTS", 1)
    monkeypatch.setattr(store_module, "KEEP_JOIN_BYTES", 0)  # no join kept: changed columns stay to copy
    store.put("id1", render_instance(InstanceIdentity("id1", "name1", "p", "r"), PollState(up=True, poll_duration=9.0)))
    before = store.render()
    pending = asyncio.ensure_future(store.body())
    for _ in range(10):  # until the copy of the changed columns has begun
        await asyncio.sleep(0)
        if store._held is not None:
            break
    assert store._held == []
    identity = InstanceIdentity("id0", "renamed", "p", "r")
    store.put("id0", render_instance(identity, PollState(up=True)))
    assert store.render() == before  # held until the copy is whole
    assert b"".join(await pending) == before
    after = b"".join(await store.body())
    assert after != before and after == store.render() and b'instance_name="renamed"' in after


async def test_only_changed_families_are_joined_again(monkeypatch):
    monkeypatch.setattr(store_module, "THREAD_PIECES", 10**9)  # joined on the spot, counted below
    store = filled_store(20)
    first = await store.body()
    identity = InstanceIdentity("id3", "name3", "p", "r")
    state = PollState(up=False, poll_duration=1.5)  # only htap_poll_duration_seconds changes
    store.put("id3", render_instance(identity, state))
    second = await store.body()
    assert len(second) == len(first) + 2  # a new family: its header and samples
    assert b"".join(second) == store.render()
    kept = {id(part) for part in first} & {id(part) for part in second}
    assert len(kept) >= len(first) - 2  # every other family's join reused as it was
    store.remove("id3")
    assert b'"id3"' not in b"".join(await store.body()) and b"".join(await store.body()) == store.render()


async def test_a_big_join_is_never_kept_not_even_for_a_column_that_stays_unchanged(monkeypatch):
    """A big join kept past its scrape is a second copy of its column's bytes: for a steady fleet
    (every family unchanged), of the whole body. It is let go after the scrape, changed or not."""
    monkeypatch.setattr(store_module, "THREAD_PIECES", 10**9)
    monkeypatch.setattr(store_module, "KEEP_JOIN_BYTES", 0)  # every join counts as big
    store = filled_store(20)
    duration = store._columns[("htap_poll_duration_seconds",)]
    info = store._columns[("htap_instance_info",)]

    def churn(seconds: float) -> None:
        identity = InstanceIdentity("id3", "name3", "p", "r")
        store.put("id3", render_instance(identity, PollState(up=False, poll_duration=seconds)))

    bodies = []
    for seconds in (1.0, 2.0, 3.0):
        churn(seconds)
        bodies.append(b"".join(await store.body()))
        assert bodies[-1] == store.render()
        # info never changed, duration did each time: neither join is kept
        assert info.joined == b"" and duration.joined == b""
    assert len(set(bodies)) == 3 and b"htap_poll_duration_seconds{" in bodies[-1]


def test_pieces_leave_whole_and_in_order_a_few_sends_at_a_time(monkeypatch):
    from htap_exporter.web import sending
    monkeypatch.setattr(sending, "SEND_BYTES", 1000)
    pieces = [b"", *(b"%d," % i * (i % 7) for i in range(1234)), b"", b"end"]
    parts: list = [b"head", Pieces.of(pieces), b"x" * 3000, Pieces.of([]), Pieces.of([b"a", b"b"]), b"tail"]
    writer, reader = socket.socketpair()
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a send waits for the reader
    with ThreadPoolExecutor(1) as pool, reader:
        received = pool.submit(lambda: b"".join(iter(lambda: reader.recv(1000), b"")))
        sending._send_all(writer, parts, 30.0)  # closes the writer
        assert received.result(timeout=30) == b"head" + b"".join(pieces) + b"x" * 3000 + b"abtail"


def test_without_a_kernel_send_timeout_the_thread_sends_with_a_python_one(monkeypatch):
    from htap_exporter.web import sending
    refused = []
    setsockopt = socket.socket.setsockopt

    def without_send_timeouts(sock, level, option, value):
        if option == socket.SO_SNDTIMEO:
            refused.append(value)
            raise OSError("not here")
        return setsockopt(sock, level, option, value)

    monkeypatch.setattr(socket.socket, "setsockopt", without_send_timeouts)
    writer, reader = socket.socketpair()
    with ThreadPoolExecutor(1) as pool, reader:
        received = pool.submit(lambda: b"".join(iter(lambda: reader.recv(1 << 16), b"")))
        sending._send_all(writer, [b"head", Pieces.of([b"x" * 1000] * 5000), b"tail"], 30.0)  # closes the writer
        assert received.result(timeout=30) == b"head" + b"x" * 5_000_000 + b"tail"
    assert len(refused) == 1


def test_a_body_is_cut_into_sends_of_a_bounded_size_and_number_of_pieces():
    from htap_exporter.web.sending import _batches
    family = [b"%05d\n" % i for i in range(10_000)]  # 60,000 bytes
    parts: list = [b"# header\n", Pieces.of(family), b"# small\n", Pieces.of([b"a\n"] * 10), Pieces.of([]),
                   b"# tail\n"]
    whole = b"".join(part if isinstance(part, bytes) else b"".join(part.lines) for part in parts)

    def cut(**limits: int) -> list[list[bytes]]:
        batches = list(_batches(parts, **limits))
        assert b"".join(b"".join(batch) for batch in batches) == whole  # every piece, in order
        return batches

    by_bytes = cut(max_bytes=8_000, max_pieces=10**6)
    # the family in 8 slices of 7,500 bytes, the header riding with the first, the small parts with the last
    assert [sum(map(len, batch)) for batch in by_bytes] == [9 + 7_500] + [7_500] * 6 + [7_500 + 8 + 20 + 7]
    by_pieces = cut(max_bytes=10**6, max_pieces=3_000)
    assert [len(batch) for batch in by_pieces] == [1 + 2_500, 2_500, 2_500, 2_500 + 1 + 10 + 1]
    assert len(cut(max_bytes=10**6, max_pieces=10**6)) == 1  # small parts share one send
    assert list(_batches([b"", Pieces.of([])], max_bytes=10)) == [[b""]]


async def test_pieces_go_joined_through_the_transport_when_no_thread_is_free():
    sender = BodySender(threads=0)

    class Request:
        transport = None

    written: list[bytes] = []

    class Response:
        async def write(self, data: bytes) -> None:
            written.append(bytes(data))

    parts: list = [b"a", Pieces.of([b"b", b"", b"c"] * 1000), b"d"]
    await sender.send(Request(), Response(), parts, 2 + 2000)  # type: ignore[arg-type]
    assert b"".join(written) == b"a" + b"bc" * 1000 + b"d"


async def test_a_body_as_pieces_is_the_body_and_no_big_family_is_joined(monkeypatch):
    monkeypatch.setattr(store_module, "KEEP_JOIN_BYTES", 100)  # every family of 20 instances is big
    store = filled_store(20)

    bodies = {openmetrics: await store.pieces(openmetrics=openmetrics) for openmetrics in (False, True)}
    assert all(column.joined == b"" for column in store._columns.values())  # none joined, none kept
    for openmetrics, (parts, size) in bodies.items():
        assert any(isinstance(part, Pieces) for part in parts)
        assert flat(parts) == store.render(openmetrics=openmetrics) and size == len(flat(parts))
        # each family's length as its column counted it: what the sender cuts its sends by
        assert all(part.size == len(b"".join(part.lines)) for part in parts if isinstance(part, Pieces))
    # Sizes follow every change: a new value, a family dropped, a block removed.
    store.put("id3", render_instance(InstanceIdentity("id3", "name3", "p", "r"), PollState(up=True, poll_duration=2.5)))
    store.remove("id4")
    for column in store._columns.values():
        assert column.size == sum(len(slot) if isinstance(slot, bytes) else sum(map(len, slot)) for slot in column.slots)
    parts, size = await store.pieces()
    assert flat(parts) == store.render() and size == len(flat(parts)) and b'"id4"' not in flat(parts)


def test_a_big_bodys_socket_gets_a_wider_send_buffer_only_where_the_system_allows_it(tmp_path: Path):
    limit = tmp_path / "wmem_max"
    limit.write_text(f"{SEND_BUFFER_BYTES}\n")
    assert send_buffer_size(limit) == SEND_BUFFER_BYTES
    limit.write_text("212992\n")  # the usual default: a fixed buffer that small would be slower
    assert send_buffer_size(limit) is None
    limit.write_text("not a number")
    assert send_buffer_size(limit) is None
    assert send_buffer_size(tmp_path / "missing") is None
    one, other = socket.socketpair()
    with one, other:
        before = one.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        widen_send_buffer(one, 2 * before)
        assert one.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) > before


async def test_a_body_is_copied_a_few_columns_at_a_time_and_changes_meanwhile_wait_for_it(monkeypatch):
    """Copying every column in one step held polling for ~4 ms a scrape at 20,000 instances: the copy
    lets the loop run between columns, and a block put or removed meanwhile is applied once the copy
    is whole, so that every family of the body is of one moment."""
    monkeypatch.setattr(store_module, "SNAPSHOT_STEP_SLOTS", 1)  # the loop runs after every column
    monkeypatch.setattr(store_module, "KEEP_JOIN_BYTES", 0)  # no join kept: every column is copied
    store = filled_store(5)
    before = store.render()

    copying = asyncio.ensure_future(store.pieces())
    turns = 0
    while not copying.done():
        await asyncio.sleep(0)
        turns += 1
        if turns == 2:
            store.put("id0", render_instance(InstanceIdentity("id0", "renamed", "p", "r"), PollState(up=True)))
            store.remove("id4")
            assert store.render() == before  # held
    parts, size = copying.result()
    assert flat(parts) == before and size == len(before)
    assert turns > 3  # the loop ran between the columns
    after = store.render()
    assert b'instance_name="renamed"' in after and b'"id4"' not in after

    # a scrape cancelled while it copies: what came meanwhile is applied all the same
    copying = asyncio.ensure_future(store.pieces())
    while store._held is None:
        await asyncio.sleep(0)
    store.put("id2", render_instance(InstanceIdentity("id2", "renamed2", "p", "r"), PollState(up=True)))
    copying.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await copying
    assert store._held is None and b'instance_name="renamed2"' in store.render()
