"""Guards for the HTTP server against clients that hold connections without using them.

aiohttp's server has no header-read timeout of its own, no cap on connections, and the process
inherits the common soft limit of 1,024 open files: ~1,100 connections that each send half a
request line used to take /metrics and /-/healthy down, and asyncio then logged a traceback per
failed accept. What Go exporters get by default is rebuilt here, around aiohttp's own protocol:

- a request's headers must arrive within `read_timeout` of the connection opening (slowloris);
  afterwards aiohttp's keep-alive timeout (set to the same value) closes idle connections and
  ones that start a next request and stall;
- a response whose client stops reading for `write_stall_timeout` is abandoned (slow reader);
- at most `max_connections` connections: one over the cap takes the place of the oldest
  connection that is only waiting for a request, or, if every connection is busy with a request,
  is answered 503 and closed; nothing is queued without bound and nothing crashes;
- the soft RLIMIT_NOFILE is raised to the hard limit at start, as the Go runtime does;
- with TLS, a connection counts from accept, before its handshake: asyncio's TLS layer is put
  under the guard (`TlsGate`) instead of over it, and reads into a 32 KiB buffer instead of 256 KiB,
  so thousands of silent TLS connections cost neither the cap's worth of handshakes nor ~0.3 MB each.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import ssl
from asyncio import sslproto
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web

log = logging.getLogger(__name__)

# Sockets, files and outgoing API connections need descriptors too: the connection cap never
# takes more than half of the open-file limit.
RESERVED_FILES = 64
# After this many connections closed, glibc is asked to hand freed memory back to the system
# (malloc_trim), a second later: a burst of connections otherwise leaves the process tens of MB
# bigger for good, its freed memory kept in malloc's arenas.
TRIM_AFTER_CLOSED = 256
TRIM_DELAY = 1.0
MIN_CONNECTIONS = 16
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Length: 32\r\nConnection: close\r\n\r\nToo many connections, try again.")


@dataclass(frozen=True)
class GuardLimits:
    read_timeout: float = 10.0
    max_connections: int = 512
    write_stall_timeout: float = 60.0


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns (soft before, soft now)."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:
        target = 1 << 20  # Linux' default nr_open; macOS refuses "infinity" for this limit
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return soft, target
        except (ValueError, OSError):
            pass
    return soft, soft


def connection_cap(requested: int, open_files: int) -> int:
    """`requested`, lowered to fit in half of the open-file limit (-1: unknown, no lowering)."""
    if open_files < 0:
        return requested
    return min(requested, max(MIN_CONNECTIONS, (open_files - RESERVED_FILES) // 2))


ProtocolFactory = Callable[[], asyncio.Protocol]
AcceptFactory = Callable[[], asyncio.BaseProtocol]


def release_free_memory() -> bool:
    """glibc's malloc_trim(0): freed heap memory back to the system. False where there is none."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
            _malloc_trim = False
    if _malloc_trim is False:
        return False
    _malloc_trim(0)
    return True


_malloc_trim: Any = None


class ConnectionGuard:
    """Owns the connection table of one server (all its listening sites)."""

    def __init__(self, limits: GuardLimits) -> None:
        self.limits = limits
        # Insertion order is age order: the first waiting connection is the oldest one.
        self._connections: dict[GuardedConnection | TlsGate, None] = {}
        self.timed_out = 0
        self.evicted = 0
        self.refused = 0
        self._closed_since_trim = 0
        self._trim: asyncio.TimerHandle | None = None

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def protocol_factory(self, inner: ProtocolFactory, ssl_context: ssl.SSLContext | None = None) -> AcceptFactory:
        if ssl_context is None:
            return lambda: GuardedConnection(self, inner)
        return lambda: TlsGate(self, inner, ssl_context)

    def admit(self, connection: GuardedConnection | TlsGate) -> bool:
        if len(self._connections) >= self.limits.max_connections:
            victim = next((c for c in self._connections if c.waiting_for_request()), None)
            if victim is None:
                self.refused += 1
                log.warning("connection limit reached and every connection is busy: refusing new ones",
                            extra={"max_connections": self.limits.max_connections})
                return False
            self.evicted += 1
            self.forget(victim)  # at once: its connection_lost comes later, after more admissions
            log.warning("connection limit reached: closing the oldest idle connections for new ones",
                        extra={"max_connections": self.limits.max_connections})
            victim.close()
        self._connections[connection] = None
        return True

    def forget(self, connection: GuardedConnection | TlsGate) -> None:
        if self._connections.pop(connection, False) is None:
            self._closed_since_trim += 1
            if self._closed_since_trim >= TRIM_AFTER_CLOSED and self._trim is None:
                self._trim = asyncio.get_running_loop().call_later(TRIM_DELAY, self._trim_memory)

    def _trim_memory(self) -> None:
        self._trim = None
        self._closed_since_trim = 0
        release_free_memory()


class GuardedConnection(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection; it sees every byte and event first."""

    def __init__(self, guard: ConnectionGuard, inner: ProtocolFactory, counted: bool = False) -> None:
        self._guard = guard
        self._counted = counted  # already admitted (by the TlsGate under it)
        self._inner_factory = inner
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._headers_done = False
        self._tail = b""
        self._read_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self._counted and not self._guard.admit(self):
            transport.write(REFUSAL)
            transport.close()
            return
        loop = asyncio.get_running_loop()
        self._read_timer = loop.call_later(self._guard.limits.read_timeout, self._read_deadline)
        self._inner = self._inner_factory()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if not self._headers_done:
            # The end of the first request's header block; later requests are aiohttp's keep-alive's.
            window = self._tail + data
            if b"\r\n\r\n" in window or b"\n\n" in window:
                self._headers_done = True
                self._cancel_read_timer()
            self._tail = window[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._counted:
            self._guard.forget(self)
        self._cancel_read_timer()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        # The client is not reading what we send; it gets a while, not forever.
        if self._write_timer is None:
            loop = asyncio.get_running_loop()
            self._write_timer = loop.call_later(self._guard.limits.write_stall_timeout, self._write_deadline)
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        if self._inner is not None:
            self._inner.resume_writing()

    def waiting_for_request(self) -> bool:
        """True while no request is being handled: before the first one's headers are complete,
        or idle between requests (aiohttp's own test for closing an idle keep-alive connection)."""
        if self._inner is None:
            return False
        if not self._headers_done:
            return True
        waiter = getattr(self._inner, "_waiter", None)
        return isinstance(waiter, asyncio.Future) and not waiter.done()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_deadline(self) -> None:
        self._read_timer = None
        if not self._headers_done:
            self._guard.timed_out += 1
            log.debug("closing a connection that sent no complete request in time",
                      extra={"read_timeout_seconds": self._guard.limits.read_timeout})
            self.close()

    def _write_deadline(self) -> None:
        self._write_timer = None
        log.debug("closing a connection whose client stopped reading the response",
                  extra={"write_stall_timeout_seconds": self._guard.limits.write_stall_timeout})
        self.close()


class SmallBufferSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS layer with a 32 KiB read buffer (a TLS record is at most ~16.7 KiB) instead of
    256 KiB allocated for every connection, handshake or not."""

    max_size = 32 * 1024


_FIRST_READ = memoryview(bytearray(16 * 1024))


class TlsGate(asyncio.BufferedProtocol):
    """A TLS connection from accept on: counted against the cap before its handshake, then the
    TLS layer, then a GuardedConnection (not counted again) around aiohttp's protocol."""

    def __init__(self, guard: ConnectionGuard, inner: ProtocolFactory, ssl_context: ssl.SSLContext) -> None:
        self._guard = guard
        self._inner_factory = inner
        self._ssl_context = ssl_context
        self._transport: asyncio.Transport | None = None
        self._tls: SmallBufferSSLProtocol | None = None
        self._app: GuardedConnection | None = None
        self._silence_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self._guard.admit(self):
            self._transport = None
            transport.abort()  # no 503 before a handshake: the client sees the connection closed
            return
        # The TLS layer (an OpenSSL object and its buffers) is made when the first bytes arrive:
        # until then a silent connection costs a socket and this object, and it gets as long as
        # a slow request before it is closed.
        self._silence_timer = asyncio.get_running_loop().call_later(self._guard.limits.read_timeout,
                                                                     self._silence_deadline)

    def _silence_deadline(self) -> None:
        self._silence_timer = None
        if self._tls is None:
            self._guard.timed_out += 1
            self.close()

    def _start_tls(self) -> SmallBufferSSLProtocol:
        assert self._transport is not None
        if self._silence_timer is not None:
            self._silence_timer.cancel()
            self._silence_timer = None
        self._app = GuardedConnection(self._guard, self._inner_factory, counted=True)
        self._tls = SmallBufferSSLProtocol(
            asyncio.get_running_loop(), self._app, self._ssl_context, None, server_side=True,  # type: ignore[arg-type]
            # A TLS handshake that stalls is a slow request like any other.
            ssl_handshake_timeout=self._guard.limits.read_timeout)  # type: ignore[arg-type]
        self._tls.connection_made(self._transport)
        return self._tls

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._tls is not None:
            return self._tls.get_buffer(sizehint)
        # Before the first bytes: one buffer shared by every gate of the loop (buffer_updated
        # follows at once, in the same callback); the TLS layer is made when bytes did arrive,
        # not for the end of a connection that never sent any.
        return _FIRST_READ

    def buffer_updated(self, nbytes: int) -> None:
        if self._tls is None:
            if self._transport is None or self._transport.is_closing():
                return  # refused or closed: the bytes are dropped
            first = bytes(_FIRST_READ[:nbytes])
            tls = self._start_tls()
            buffer = tls.get_buffer(nbytes)
            buffer[:nbytes] = first
            tls.buffer_updated(nbytes)
            return
        self._tls.buffer_updated(nbytes)

    def eof_received(self) -> bool | None:
        if self._tls is not None:
            self._tls.eof_received()
        return None  # the transport closes (asyncio's TLS layer answers the same)

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.forget(self)
        if self._silence_timer is not None:
            self._silence_timer.cancel()
            self._silence_timer = None
        if self._tls is not None:
            self._tls.connection_lost(exc)
            self._tls = None

    def pause_writing(self) -> None:
        if self._tls is not None:
            self._tls.pause_writing()

    def resume_writing(self) -> None:
        if self._tls is not None:
            self._tls.resume_writing()

    def waiting_for_request(self) -> bool:
        """Before and during the handshake, and whenever the connection inside waits for a request."""
        if self._transport is None:
            return False
        if self._tls is None or self._app is None or self._app._transport is None:
            return True
        return self._app.waiting_for_request()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class GuardedSite(web.BaseSite):
    """A TCPSite whose connections pass through a ConnectionGuard (same arguments as TCPSite)."""

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int, *, guard: ConnectionGuard,
                 ssl_context: ssl.SSLContext | None = None, backlog: int = 128) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        # No ssl= here: the guard wraps the TLS layer itself (TlsGate), so that it counts from accept.
        self._server = await loop.create_server(
            self._guard.protocol_factory(server, self._ssl_context), self._host, self._port,
            backlog=self._backlog)
