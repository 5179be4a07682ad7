"""What a scrape gets: format negotiation, `name[]=` filters and gzip, over bytes the store prepared.

Formats and filters follow prometheus_client's own handler (`choose_encoder`, `gzip_accepted`,
`restricted_registry`), so clients see the same behaviour as from any Python exporter; the
difference is that nothing is rendered here, only bytes are chosen, cut and compressed.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable, Sequence

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_FORMAT = "application/openmetrics-text; version=1.0.0; charset=utf-8"
OPENMETRICS_EOF = b"# EOF\n"

# Measured with bench/gzip_levels.py on a 6 MB body (900 instances, 250 sessions each), 2 cores:
# level 1 took 17-49 ms for 321 KB, level 6 53-111 ms for 274 KB, level 9 178-311 ms for 259 KB.
# Level 1 costs a third of level 6 and a tenth of level 9 for a body 17-24 % bigger (still 19x
# smaller than the text); scrapes are frequent and share the CPU with polling, so it wins.
GZIP_LEVEL = 1
# Compressing more than this runs in a thread, so the event loop keeps polling meanwhile.
THREAD_THRESHOLD = 256 * 1024

_SAMPLE_NAME_RE = re.compile(rb"[^{ \t]+")


def wants_openmetrics(accept: str | None) -> bool:
    """OpenMetrics 1.0 when the Accept header names it without a version or with version >= 1,
    as prometheus_client's `choose_encoder` decides (Prometheus asks for it first)."""
    for media in (accept or "").split(","):
        parts = [part.strip() for part in media.split(";")]
        if parts[0].lower() != "application/openmetrics-text":
            continue
        version = next((p.split("=", 1)[1].strip() for p in parts[1:] if p.lower().startswith("version=")), "")
        if not version or _version_tuple(version) >= (1, 0, 0):
            return True
    return False


def _version_tuple(version: str) -> tuple[int, ...]:
    numbers = []
    for piece in version.split("."):
        if not piece.isdigit():
            return (0,)
        numbers.append(int(piece))
    return tuple(numbers)


def gzip_accepted(accept_encoding: str | None) -> bool:
    """gzip unless the client does not list it or gives it q=0."""
    for coding in (accept_encoding or "").split(","):
        parts = [part.strip() for part in coding.split(";")]
        if parts[0].lower() not in ("gzip", "x-gzip"):
            continue
        for param in parts[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def filter_names(body: bytes, names: Iterable[str]) -> bytes:
    """Keep the samples whose name is listed, each family's metadata lines once before them.

    Matching is on sample names (`htap_poll_errors_total`, `..._bucket`), as prometheus_client's
    `restricted_registry` does. Works on both formats: a family's metadata lines (`# HELP`,
    `# TYPE`, `# UNIT`) share its name, and a label value cannot hold a raw newline."""
    wanted = {name.encode("utf-8") for name in names}
    out: list[bytes] = []
    family, shown = b"", False
    metadata: list[bytes] = []
    for line in body.split(b"\n"):
        if not line:
            continue
        if line.startswith((b"# HELP ", b"# TYPE ", b"# UNIT ")):
            name = line.split(b" ", 3)[2]
            if name != family:
                family, metadata, shown = name, [], False
            metadata.append(line)
        elif line.startswith(b"#"):
            continue
        else:
            match = _SAMPLE_NAME_RE.match(line)
            if match is not None and match.group(0) in wanted:
                if not shown:
                    out.extend(metadata)
                    shown = True
                out.append(line)
    return b"".join(part + b"\n" for part in out)


def select_families(families: Iterable[tuple[bytes, list[bytes]]], names: Iterable[str]) -> bytes:
    """`filter_names` over the store's families, a family at a time: one whose samples are all
    wanted is joined as it is, one with none is skipped unread, and only a family partly wanted
    (an OpenMetrics gauge histogram asked for its `_gcount` alone) is filtered line by line. At
    10,000 instances a filtered scrape then costs what its answer holds, not a pass over 80 MB."""
    text_names = list(names)
    wanted = {name.encode("utf-8") for name in text_names}
    pieces: list[bytes] = []
    for header, samples in families:
        first = next(filter(None, samples), None)  # a family without samples is left out, as filtered
        if first is None:
            continue
        present = {match.group(0) for line in first.splitlines() if (match := _SAMPLE_NAME_RE.match(line))}
        if not present & wanted:
            continue
        if present <= wanted:
            pieces.append(header)
            pieces.extend(samples)
        else:
            pieces.append(filter_names(header + b"".join(samples), text_names))
    return b"".join(pieces)


@dataclass
class _Prefix:
    """A gzip stream holding the store's part of a body, left open so each scrape appends its own
    self-metrics and trailer to a copy of it: one compression of the big part per generation."""

    compressed: bytes
    compressor: "zlib._Compress"


async def compress(data: bytes) -> bytes:
    return (await _compress_open([data])).compressed_closed()


def _gzip_open(parts: Sequence[bytes]) -> _Prefix:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    compressed = [compressor.compress(part) for part in parts]
    compressed.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return _Prefix(b"".join(compressed), compressor)


async def _compress_open(parts: Sequence[bytes]) -> "_OpenGzip":
    if sum(map(len, parts)) > THREAD_THRESHOLD:
        prefix = await asyncio.to_thread(_gzip_open, parts)
    else:
        prefix = _gzip_open(parts)
    return _OpenGzip(prefix)


async def _compress_part(store_part: Callable[[], Awaitable[Sequence[bytes]]]) -> "_OpenGzip":
    return await _compress_open(await store_part())


@dataclass
class _OpenGzip:
    prefix: _Prefix

    def finish(self, tail: bytes) -> tuple[bytes, bytes]:
        """The body as two parts, the shared prefix and this scrape's end, so that the big part is
        written as it is rather than copied into a new string per scrape."""
        compressor = self.prefix.compressor.copy()
        return self.prefix.compressed, compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)

    def compressed_closed(self) -> bytes:
        return b"".join(self.finish(b""))


class GzipCache:
    """The compressed store part per (generation, format, filter), shared by concurrent scrapes.

    Only the latest key is kept: when the store moves on, the old bytes are of no use. Scrapes that
    arrive while a compression runs wait for it instead of starting their own."""

    def __init__(self) -> None:
        self._key: object = None
        self._pending: asyncio.Future[_OpenGzip] | None = None

    async def body(self, key: object, store_part: Callable[[], Awaitable[Sequence[bytes]]],
                   tail: bytes) -> tuple[bytes, bytes]:
        if key != self._key or self._pending is None:
            self._key = key
            self._pending = asyncio.ensure_future(_compress_part(store_part))
        pending = self._pending
        try:
            opened = await asyncio.shield(pending)
        except BaseException:
            if self._pending is pending and pending.done():
                self._key, self._pending = None, None  # a failed compression is not cached
            raise
        return opened.finish(tail)
