"""The latest rendered block of every instance, swapped in whole after each poll.

Asyncio runs one task at a time, so replacing an instance's block is atomic: a scrape sees either
the previous poll's output of an instance or the new one, never half of each.

The blocks are kept by column as well: one dictionary per part of the exposition (a family, or
the OpenMetrics gauge histogram's three parts together), instance -> its sample lines. A body is
then each family's header followed by its column's values, gathered at C speed with no Python
code per instance, and joined once per change (`generation`): scrapes between two polls, and any
number of concurrent scrapes, share one join. A big join runs in a thread at background priority
(bytes.join lets go of the GIL while it copies), so that at 10,000 instances a scrape holds the event loop, and with it
every poll, for the gathering only.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from exporter.metrics import OPENMETRICS_LAYOUT, TEXT_LAYOUT, InstanceBlock, InstanceStatus
from exporter.threads import background_executor

# A body gathered from more pieces than this (~120 instances, ~1 MB) is joined in a thread: on the
# event loop, joining 1,000 instances' 8 MB held polling for ~3 ms.
THREAD_PIECES = 2 * 1024

Layout = tuple[tuple[bytes, tuple[str, ...]], ...]
_PARTS: tuple[tuple[str, ...], ...] = tuple(dict.fromkeys(names for _, names in TEXT_LAYOUT + OPENMETRICS_LAYOUT))


class Store:
    def __init__(self) -> None:
        self._blocks: dict[str, InstanceBlock] = {}
        self._columns: dict[tuple[str, ...], dict[str, bytes]] = {names: {} for names in _PARTS}
        self._bodies: dict[bool, tuple[int, bytes]] = {}
        self._joining: dict[bool, tuple[int, asyncio.Future[bytes]]] = {}
        self._joiner: ThreadPoolExecutor | None = None  # one thread, made on the first big join
        self.generation = 0  # grows on every put and remove

    def put(self, key: str, block: InstanceBlock) -> None:
        self._blocks[key] = block
        samples = block.samples
        for names, column in self._columns.items():
            if names[0] not in samples:
                column.pop(key, None)
            elif len(names) == 1:
                column[key] = samples[names[0]]
            else:  # the OpenMetrics gauge histogram: buckets, count and sum of an instance together
                column[key] = b"".join(samples[name] for name in names)
        self.generation += 1

    def remove(self, key: str) -> None:
        if self._blocks.pop(key, None) is not None:
            for column in self._columns.values():
                column.pop(key, None)
            self.generation += 1

    def keys(self) -> set[str]:
        return set(self._blocks)

    def statuses(self) -> list[InstanceStatus]:
        """Every instance's status, by project, name and id."""
        return sorted((block.status for block in self._blocks.values()),
                      key=lambda status: (status.project_id, status.instance_name, status.instance_id))

    def _pieces(self, openmetrics: bool) -> list[bytes]:
        """Each family's header, then its samples from every instance, as both formats require."""
        pieces: list[bytes] = []
        for header, names in OPENMETRICS_LAYOUT if openmetrics else TEXT_LAYOUT:
            column = self._columns[names]
            if column:
                pieces.append(header)
                pieces.extend(column.values())
        return pieces

    def families(self, openmetrics: bool = False) -> list[tuple[bytes, list[bytes]]]:
        """Each family's header and its instances' sample lines (families without samples left out)."""
        return [(header, list(column.values()))
                for header, names in (OPENMETRICS_LAYOUT if openmetrics else TEXT_LAYOUT)
                if (column := self._columns[names])]

    def render(self, openmetrics: bool = False) -> bytes:
        """Every instance's families, text format 0.0.4 or OpenMetrics (without `# EOF`)."""
        cached = self._bodies.get(openmetrics)
        if cached is not None and cached[0] == self.generation:
            return cached[1]
        body = b"".join(self._pieces(openmetrics))
        self._bodies[openmetrics] = (self.generation, body)
        return body

    async def body(self, openmetrics: bool = False) -> bytes:
        """`render`, with a big join in a thread; scrapes that ask while it runs wait for it."""
        generation = self.generation
        cached = self._bodies.get(openmetrics)
        if cached is not None and cached[0] == generation:
            return cached[1]
        joining = self._joining.get(openmetrics)
        if joining is None or joining[0] != generation:
            pieces = self._pieces(openmetrics)  # taken now: the thread never sees the store change
            if len(pieces) < THREAD_PIECES:
                return self.render(openmetrics)
            if self._joiner is None:
                self._joiner = background_executor(1, "htap-join")
            join = asyncio.get_running_loop().run_in_executor(self._joiner, b"".join, pieces)
            joining = (generation, asyncio.ensure_future(join))
            self._joining[openmetrics] = joining
        try:
            body = await asyncio.shield(joining[1])
        finally:
            if self._joining.get(openmetrics) is joining and joining[1].done():
                del self._joining[openmetrics]
        if self._bodies.get(openmetrics, (-1, b""))[0] < generation:
            self._bodies[openmetrics] = (generation, body)
        return body
