"""One HTTP exchange with the cloud: concurrency cap, timeout, body cap, error mapping.

Every failure leaves here as an ApiError whose `reason` is one of the documented values of
`htap_poll_errors_total`; nothing else escapes (a server's mistake must never crash us).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import logging
import netrc
import os
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping
from urllib.request import getproxies, proxy_bypass

import aiohttp
import msgspec
from yarl import URL

from htap_exporter.clock import RateLimiter
from htap_exporter.cloud.errors import ApiError

log = logging.getLogger(__name__)

THROTTLING_CODES = frozenset({"APIG.0308", "APIGW.0308"})
MAX_ERROR_BODY_BYTES = 64 * 1024

RequestObserver = Callable[[str, str, float], None]  # (api, code, seconds)
Prepare = Callable[[], Awaitable[tuple[URL, dict[str, str]]]]


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]  # aiohttp's case-insensitive headers as they came (not copied)
    body: bytes

    def json(self) -> Any:
        try:
            return parse_json(self.body)
        except (msgspec.DecodeError, RecursionError) as problem:
            raise ApiError("bad_response", f"invalid JSON: {str(problem)[:120]}", status=self.status) from None


# A number beyond the float range (1e400) is inf, as the standard library makes it, not an error.
_JSON = msgspec.json.Decoder(float_hook=float)


def parse_json(body: bytes | msgspec.Raw) -> Any:
    """A JSON document (RFC 8259): NaN and Infinity literals, lone surrogate escapes, bytes that
    are not UTF-8 and nesting deeper than msgspec follows raise msgspec.DecodeError or
    RecursionError."""
    return _JSON.decode(body)


# Requests waiting for a slot from which a walk's next page goes first (RequestSlots).
BACKLOG = 1024


class RequestSlots:
    """The cap on requests in flight: asyncio.Semaphore's FIFO, but a waiter that gives up costs
    O(1). asyncio.Semaphore removes a cancelled waiter from its queue by search, so stopping
    10,000 polls queued for a slot took tens of seconds; here it is only marked, and skipped.

    Behind a backlog (BACKLOG requests or more waiting), a request that continues a walk already
    under way (a poll's next page) is served before those that start one: a poll between two pages
    holds what it counted so far (the ids it saw, its counts), and when the polls fell behind (a
    machine short of CPU), each one's next page queued behind thousands of first pages, so
    thousands of polls held that at once. At 20,000 instances every 30 s beside a process taking a
    whole core (every instance up only after 130-150 s), RSS after a dozen scrapes was 691 and
    799 MB in two runs, with this 547 MB (542 MB on a quiet machine). Without a backlog the order
    stays first come, first served: next pages served first always cost 5 % more CPU a call at
    1,000 instances every 5 s (side by side), and gave 633 MB in the run above."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._continuing: collections.deque[asyncio.Future[None]] = collections.deque()
        self.next_page = _Continuing(self)  # `async with` it for a walk's next request

    async def acquire(self, continuing: bool = False) -> None:
        """Wait for a slot; `continuing`: for the next request of a walk under way (served first)."""
        if self._free > 0 and not self._waiters and not self._continuing:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._continuing if continuing and len(self._waiters) >= BACKLOG else self._waiters).append(waiter)
        try:
            await waiter  # resolved by a release that hands its slot over
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, then cancelled: pass it on
            raise

    def release(self) -> None:
        for waiters in (self._continuing, self._waiters):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def locked(self) -> bool:
        return self._free == 0


def _netrc_from_env() -> netrc.netrc | None:
    """$NETRC, or ~/.netrc (~/_netrc on Windows); None when there is none or it cannot be read."""
    path = os.environ.get("NETRC")
    if path is None:
        try:
            path = os.path.join(os.path.expanduser("~"), "_netrc" if os.name == "nt" else ".netrc")
        except RuntimeError:
            return None
    try:
        return netrc.netrc(path)
    except netrc.NetrcParseError as problem:
        log.warning("Could not parse .netrc file: %s", problem)
    except OSError as problem:
        if "NETRC" in os.environ or os.path.isfile(path):
            log.warning("Could not read .netrc file: %s", problem)
    return None


class Proxies:
    """HTTP_PROXY/HTTPS_PROXY/NO_PROXY (and proxy credentials from ~/.netrc), read once at start.

    aiohttp's `trust_env` reads the environment and ~/.netrc again for every request, in a worker
    thread: at 1,000 instances every 5 s that was a third of the exporter's CPU."""

    def __init__(self, by_scheme: dict[str, tuple[URL, aiohttp.BasicAuth | None]]) -> None:
        self._by_scheme = by_scheme
        self._decided: dict[tuple[str, str], tuple[URL | None, aiohttp.BasicAuth | None]] = {}

    @classmethod
    def from_env(cls) -> Proxies:
        """The proxies aiohttp's `trust_env` would use: http(s)/ws(s) ones from the environment,
        credentials from the proxy URL or else from the netrc file; an https:// proxy is not
        supported by aiohttp and is left out with a warning."""
        netrc_file = _netrc_from_env()
        by_scheme: dict[str, tuple[URL, aiohttp.BasicAuth | None]] = {}
        for scheme, address in getproxies().items():
            if scheme not in ("http", "https", "ws", "wss"):
                continue
            with_credentials = URL(address)
            proxy = with_credentials.with_user(None)
            if proxy.scheme in ("https", "wss"):
                log.warning("%s proxies %s are not supported, ignoring", proxy.scheme.upper(), proxy)
                continue
            auth = aiohttp.BasicAuth.from_url(with_credentials)
            if auth is None and netrc_file is not None and proxy.host is not None:
                found = netrc_file.authenticators(proxy.host)
                if found is not None:
                    login, account, password = found
                    auth = aiohttp.BasicAuth.from_url(proxy.with_user(login or account).with_password(password or ""))
            by_scheme[scheme] = (proxy, auth)
        return cls(by_scheme)

    def for_url(self, url: URL) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        key = (url.scheme, url.host or "")
        decided = self._decided.get(key)
        if decided is None:
            found = self._by_scheme.get(url.scheme)
            if found is None or (url.host is not None and proxy_bypass(url.host)):
                decided = (None, None)
            else:
                decided = found
            self._decided[key] = decided
        return decided


@dataclass
class Transport:
    session: aiohttp.ClientSession
    semaphore: RequestSlots | asyncio.Semaphore
    timeout: float
    max_body_bytes: int
    observe: RequestObserver = field(default=lambda api, code, seconds: None)

    # Secrets a server might echo back (e.g. a token in error_msg) are masked before any text is cut
    # short, so that no fragment of one survives into an error or a log line.
    redact: Callable[[str], str] = field(default=lambda text: text)
    # A project's own CA bundle (`ca_file`); None: the system's CAs. Verification is never off.
    ssl_context: ssl.SSLContext | None = None
    proxies: Proxies | None = None
    # One ClientTimeout for every request (a new one per request costs for nothing).
    _timeout: aiohttp.ClientTimeout = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._timeout = aiohttp.ClientTimeout(total=self.timeout)

    async def send(self, api: str, method: str, url: URL, headers: dict[str, str], body: bytes = b"",
                   limiter: RateLimiter | None = None, *, capped: bool = True) -> Response:
        """Send one request; any non-2xx answer is raised as an ApiError with its reason."""

        async def prepared() -> tuple[URL, dict[str, str]]:
            return url, headers

        return await self.send_prepared(api, method, prepared, body, limiter, capped=capped)

    async def send_prepared(self, api: str, method: str, prepare: Prepare, body: bytes = b"",
                            limiter: RateLimiter | None = None, *, capped: bool = True,
                            continuing: bool = False) -> Response:
        """Like send, but the URL and headers come from `prepare`, called once a request slot is
        held: an AK/SK signature (X-Sdk-Date) must not age in the queue, as the gateway refuses
        signatures older than 15 minutes. Uncapped requests (IAM tokens, one per project per
        renewal) bypass the slots, so a poll holding a slot can never wait for one behind itself.
        `continuing`: the request continues a walk under way (a next page), served first."""
        if limiter is not None:
            await limiter.wait()
        slots = self.semaphore
        async with (contextlib.nullcontext() if not capped
                    else slots.next_page if continuing and isinstance(slots, RequestSlots) else slots):
            url, headers = await prepare()
            started = time.monotonic()
            code = "error"
            try:
                proxy, proxy_auth = self.proxies.for_url(url) if self.proxies is not None else (None, None)
                async with self.session.request(
                    method, url, headers=headers, data=body or None, allow_redirects=False,
                    timeout=self._timeout, ssl=self.ssl_context if self.ssl_context is not None else True,
                    proxy=proxy, proxy_auth=proxy_auth,
                ) as answer:
                    code = str(answer.status)
                    ok = 200 <= answer.status < 300
                    cap = self.max_body_bytes if ok else MAX_ERROR_BODY_BYTES
                    declared = answer.content_length
                    # The usual page, declared and not compressed (a compressed body's declared size
                    # says nothing of what it expands to): one read, no chunk loop.
                    if (ok and declared is not None and declared <= cap
                            and "Content-Encoding" not in answer.headers):
                        payload = await answer.read()
                        if len(payload) > cap:  # more than declared: a broken server
                            raise ApiError("bad_response", f"body exceeds the {cap}-byte cap", status=answer.status)
                    else:
                        payload = await _read_capped(answer, cap, truncate=not ok)
                    response = Response(answer.status, answer.headers, payload)
            except ApiError:
                raise
            except asyncio.TimeoutError:
                code = "timeout"
                raise ApiError("timeout", f"no answer within {self.timeout:g}s") from None
            except (aiohttp.ClientError, OSError) as problem:
                raise ApiError("network", f"{type(problem).__name__}: {_short(self.redact(str(problem)))}") from None
            finally:
                self.observe(api, code, time.monotonic() - started)
        if not 200 <= response.status < 300:
            raise error_from_response(response, self.redact)
        return response


class _Continuing:
    """A slot of RequestSlots for the next request of a walk under way."""

    __slots__ = ("_slots",)

    def __init__(self, slots: RequestSlots) -> None:
        self._slots = slots

    async def __aenter__(self) -> None:
        await self._slots.acquire(continuing=True)

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()


async def _read_capped(answer: aiohttp.ClientResponse, cap: int, *, truncate: bool) -> bytes:
    declared = answer.content_length
    if declared is not None and declared > cap and not truncate:
        raise ApiError("bad_response", f"body of {declared} bytes exceeds the {cap}-byte cap", status=answer.status)
    chunks: list[bytes] = []
    size = 0
    async for chunk in answer.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > cap:
            if truncate:
                chunks.append(chunk[: cap - (size - len(chunk))])
                break
            raise ApiError("bad_response", f"body exceeds the {cap}-byte cap", status=answer.status)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date -> seconds from now (None if absent/invalid)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True, but float("²") raises
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(response: Response, redact: Callable[[str], str] = lambda text: text) -> ApiError:
    error_code = error_msg = None
    try:
        document = parse_json(response.body)
    except (msgspec.DecodeError, RecursionError):
        document = None
    if isinstance(document, dict):
        code, msg = document.get("error_code"), document.get("error_msg")
        # IAM nests its errors: {"error": {"code": ..., "message": ...}}
        nested = document.get("error")
        if code is None and isinstance(nested, dict):
            code, msg = nested.get("code"), nested.get("message")
        error_code = redact(str(code))[:64] if isinstance(code, (str, int)) else None
        error_msg = redact(msg)[:300] if isinstance(msg, str) else None
    headers = {k.lower(): v for k, v in response.headers.items()}
    retry_after = parse_retry_after(headers.get("retry-after"))
    status = response.status
    if status == 429 or error_code in THROTTLING_CODES:
        return ApiError("throttled", "throttled by the API", status=status, error_code=error_code,
                        error_msg=error_msg, retry_after=retry_after)
    if status in (401, 403):
        return ApiError("auth", "authentication rejected", status=status, error_code=error_code,
                        error_msg=error_msg, retry_after=retry_after)
    message = f"HTTP {status}"
    if document is None and b"<html" in response.body[:2048].lower():
        message += " (HTML error page, e.g. from a gateway or proxy)"
    return ApiError("http", message, status=status, error_code=error_code, error_msg=error_msg,
                    retry_after=retry_after)


def _short(text: str) -> str:
    return text[:200] or "no detail"
