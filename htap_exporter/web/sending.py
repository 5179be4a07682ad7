"""Writing a big response body without holding the event loop that polls.

At 10,000 instances a scrape is ~80 MB of text. Handed to the transport in one piece, asyncio
copies it (aiohttp joins it with the headers, the transport keeps what the socket did not take in
a buffer of its own), and then sends at most one socket buffer per turn of the event loop: a turn
that also runs hundreds of polls. The scrape took most of a second and the copies stalled every
poll for tens of milliseconds.

So a big body on a plain TCP connection is sent from a thread, with `sendall` on a duplicate of the
socket in blocking mode: it waits for the socket in C without the GIL and sends as fast as the
client reads, while the event loop goes on polling. A part may be a list of pieces (the store's
slots of a family, never joined there): the thread joins them a few MB at a time as it sends, so a
big body is never held whole a second time. A few threads at most: a slow reader holds one for as long as it
reads (up to the stall timeout), and when all are busy, or on TLS (whose bytes only the transport
can encrypt), the body goes through the transport in slices, so the loop never copies more than a
slice at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

from aiohttp import web

from htap_exporter.exposition.store import Pieces
from htap_exporter.threads import background_executor

# A part of a body: bytes, or pieces to send one after the other (with their length in all).
Part = bytes | Pieces

# Below this a body goes through the transport whole: one copy of it costs less than a thread hop.
THREAD_MIN_BYTES = 1024 * 1024
SLICE_BYTES = 1024 * 1024
# A body leaves in sends of at most about this many bytes and pieces (an instance's lines of a
# family, ~0.1-2 KB), joined in the sending thread. Each send and each join of 1 MB or more lets go
# of the GIL, and the thread then waits for the polling loop to give it back (up to the interpreter's
# 5 ms switch interval): so a family's header rides with its first pieces, and a small family with
# what follows, instead of a send of their own. The pieces bound how long a join holds the GIL
# around its copy (~0.1 ms for 8,192 pieces).
SEND_BYTES = 16 * 1024 * 1024
SEND_PIECES = 8 * 1024
# A big body's connection gets a send buffer this big where the system allows that much
# (net.core.wmem_max): the kernel then takes a few MB at a time from the sending thread, which needs
# the GIL back fewer times while a slow reader catches up. At 20,000 instances (a 192 MB body, five
# rounds alternated with the kernel's own tuning) the scrape's p50 was lower in four rounds of five,
# 196-274 ms against 297-362 ms in the last three. Where the system allows less, the kernel's own
# tuning (up to net.ipv4.tcp_wmem's maximum, 4 MB by default) is left alone: a smaller fixed buffer
# would be slower.
SEND_BUFFER_BYTES = 4 * 1024 * 1024
WMEM_MAX = Path("/proc/sys/net/core/wmem_max")


class BodySender:
    def __init__(self, *, threads: int = 4, stall_timeout: float = 60.0) -> None:
        self._threads = threads
        self._stall_timeout = stall_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._sockets: set[socket.socket] = set()  # in use by a thread, shut down on close()
        self._send_buffer = send_buffer_size()
        self.threaded = 0  # bodies sent from a thread (tests and benchmarks read it)

    def sends_pieces(self, request: web.Request) -> bool:
        """Whether a big body for `request` can go as pieces from a thread now (a plain socket and a
        free thread); `send` still takes pieces when that changed meanwhile."""
        return self._plain_socket(request) is not None

    async def send(self, request: web.Request, response: web.StreamResponse, parts: Sequence[Part],
                   size: int) -> None:
        """Write `parts` (`size` bytes in all, as the caller counted them for Content-Length) as the
        body of the prepared `response`."""
        fd = self._plain_socket(request) if size >= THREAD_MIN_BYTES else None
        if fd is not None:
            await response.write(b"")  # the headers go out first, alone
            transport = request.transport
            if transport is not None and transport.get_write_buffer_size() == 0:
                await self._send_from_thread(request, fd, parts)
                return
        if not all(isinstance(part, bytes) for part in parts):  # joined in a thread, not on the event loop
            parts = await asyncio.to_thread(_joined, parts)  # not a sending thread: none may be free
        for part in parts:
            assert isinstance(part, bytes)
            view = memoryview(part)
            for start in range(0, len(view), SLICE_BYTES):
                await response.write(view[start:start + SLICE_BYTES])

    def _plain_socket(self, request: web.Request) -> int | None:
        transport = request.transport
        if transport is None or transport.is_closing() or len(self._sockets) >= self._threads:
            return None
        if transport.get_extra_info("sslcontext") is not None:
            return None
        sock = transport.get_extra_info("socket")
        return sock.fileno() if sock is not None and sock.type == socket.SOCK_STREAM else None

    def _threads_made(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = background_executor(self._threads, "htap-send")
        return self._executor

    async def _send_from_thread(self, request: web.Request, fd: int, parts: Sequence[Part]) -> None:
        sock = socket.socket(fileno=os.dup(fd))
        if self._send_buffer is not None:
            widen_send_buffer(sock, self._send_buffer)
        executor = self._threads_made()
        self._sockets.add(sock)
        self.threaded += 1
        try:
            await asyncio.get_running_loop().run_in_executor(executor, _send_all, sock, parts, self._stall_timeout)
        except OSError as problem:  # the client went away or stopped reading: half a body is no body
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError(f"sending the body failed: {problem}") from None
        except asyncio.CancelledError:
            _shut_down(sock)  # the thread fails at once and closes its socket
            raise
        finally:
            self._sockets.discard(sock)

    def close(self) -> None:
        """Unblock every thread still sending (a stop must not wait for slow readers)."""
        for sock in list(self._sockets):
            _shut_down(sock)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


def send_buffer_size(limit: Path = WMEM_MAX) -> int | None:
    """SEND_BUFFER_BYTES when the system lets a socket have that much, else None."""
    try:
        allowed = int(limit.read_text(encoding="ascii").strip())
    except (OSError, ValueError):  # not Linux, or not readable: the kernel's own tuning
        return None
    return SEND_BUFFER_BYTES if allowed >= SEND_BUFFER_BYTES else None


def widen_send_buffer(sock: socket.socket, size: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError:  # refused: the kernel's own tuning, as before
        pass


def _send_all(sock: socket.socket, parts: Sequence[Part], stall_timeout: float) -> None:
    """In the thread; the socket (a duplicate) is closed here, never while a send may be using it."""
    with sock, _blocking(sock, stall_timeout):
        for batch in _batches(parts):
            sock.sendall(b"".join(batch))


def _batches(parts: Sequence[Part], max_bytes: int | None = None,
             max_pieces: int | None = None) -> Iterator[list[bytes]]:
    """Every piece of `parts`, in order, in lists of at most about `max_bytes` bytes (SEND_BYTES) and
    `max_pieces` pieces (SEND_PIECES): a big list of pieces is cut into equal slices, and small parts
    (a family's header, a small family) share a list with what follows them: a list under 1/256th
    of `max_bytes` takes the next slice whatever its size."""
    max_bytes = SEND_BYTES if max_bytes is None else max_bytes
    small = max_bytes // 256
    max_pieces = SEND_PIECES if max_pieces is None else max_pieces
    batch: list[bytes] = []
    size = 0
    for part in parts:
        # A family's length as its column counted it: summing its pieces' lengths here, in the
        # thread, read 20,000 objects a family and held the GIL for ~1 ms each time.
        pieces, total = ([part], len(part)) if isinstance(part, bytes) else part
        if not pieces:
            continue
        slices = max(1, -(-total // max_bytes), -(-len(pieces) // max_pieces))
        step = -(-len(pieces) // slices)
        for start in range(0, len(pieces), step):
            taken = pieces[start:start + step] if slices > 1 else pieces
            taken_size = total * len(taken) // len(pieces)
            if (size + taken_size > max_bytes or len(batch) + len(taken) > max_pieces) and size >= small:
                yield batch
                batch, size = [], 0
            batch += taken
            size += taken_size
    if batch:
        yield batch


@contextlib.contextmanager
def _blocking(sock: socket.socket, stall_timeout: float) -> Iterator[None]:
    """The socket in blocking mode while the thread sends, with the kernel's own send timeout
    (SO_SNDTIMEO) for a reader that stops: a blocking send hands the kernel a whole batch in one
    call, where a socket with a Python timeout polls and sends a socket buffer at a time, each call
    needing the GIL back (at 20,000 instances, at p50 a 192 MB scrape took 580-650 ms against
    760-890 ms). The duplicate shares its file's flags with the event loop's socket: the loop does
    not touch that socket while the thread sends (the handler awaits it), and it is non-blocking
    again before the thread lets go of it."""
    seconds = int(stall_timeout)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("ll", seconds, int((stall_timeout - seconds) * 1e6)))
    except OSError:  # no kernel send timeout here: Python's, as before (a socket buffer per call)
        sock.settimeout(stall_timeout)
        yield
        return
    sock.setblocking(True)
    try:
        yield
    finally:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 0))


def _joined(parts: Sequence[Part]) -> list[bytes]:
    return [part if isinstance(part, bytes) else b"".join(part.lines) for part in parts]


def _shut_down(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by its thread
        pass
