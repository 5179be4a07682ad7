"""The latest rendered block of every (instance, collector), swapped in whole after each run.

Asyncio runs one task at a time, so replacing a block is atomic: a scrape sees either the previous
run's output of an instance's collector or the new one, never half of each. Each collector's block
is kept apart, so one collector failing removes only its own series.

The blocks are also kept by family: one column per part of the exposition (a family, or the
OpenMetrics gauge histogram's three parts together), a list with a slot per instance. A small
column (up to KEEP_JOIN_BYTES) keeps its joined bytes until one of its slots changes to different
bytes, so a scrape re-joins only the small families that changed since the last one, and a body is
sent as its families' joined parts, never joined into one. A big column's join is never kept past
its scrape: it would be a second copy of the column's bytes. Kept while the column stayed unchanged
(as it was until 2026-12-06), the joins of a fleet whose families rarely change (a steady fleet, the
simulator's static pages) were a second copy of the whole body after two gzip scrapes, Prometheus's
usual kind: at 20,000 instances RSS went from 529 to 751-757 MB. Joining them again costs each such
scrape a copy of the body in a thread at background priority, next to compressing it.
Stale columns are copied (a list copy: pointers) on the event loop, and joined in a thread at
background priority once they are bigger than ~1 MB (bytes.join lets go of the GIL while it
copies). Every family of a body is as of the same moment: while a scrape copies the columns, a few
at a time with polling going on in between, the blocks put or removed meanwhile are held and
applied once the copy is whole. In one step, the copy held polling for 3.4-5.5 ms a scrape at
20,000 instances (a pointer copy touches every piece it copies, 800,000 objects far apart in
memory); in steps of SNAPSHOT_STEP_SLOTS, for ~0.6 ms at a time. Concurrent scrapes share one
refresh.
A sender that writes lists of pieces itself (`pieces`: plain TCP, uncompressed, a free sending
thread) gets a big column as that copy of its slots, never joined: the body is not held twice, and
with the column's size, which the column keeps as its slots change: reading the lengths of 20,000
instances' pieces touches 20,000 objects far apart in memory (at 20,000 instances, ~50 ms a scrape
in the sending thread, holding the GIL that polling needs).
"""

from __future__ import annotations

import asyncio
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import AbstractSet, Hashable, Iterator, Mapping, NamedTuple, cast

from htap_exporter.exposition.families import Layout, Layouts
from htap_exporter.threads import background_executor

# Stale columns holding more slots than this in all (~120 instances, ~1 MB) are joined in a
# thread: on the event loop, joining 1,000 instances' 8 MB held polling for ~3 ms.
THREAD_PIECES = 2 * 1024
# Joins up to this size are kept until their column changes (a second copy of them costs little);
# bigger ones never are (see above).
KEEP_JOIN_BYTES = 256 * 1024
# A body's copy of the columns lets polling run after about this many slots (~0.6 ms of copying at
# 20,000 instances): each step waits a turn of the loop, so smaller steps would lengthen the scrape.
SNAPSHOT_STEP_SLOTS = 128 * 1024

# One block's sample lines in a column: bytes, or the parts of an OpenMetrics gauge histogram.
Slot = bytes | tuple[bytes, ...]


# One of an instance's longest-running sessions, as the landing page lists it: its labels
# (session_id, user, database, command, state, sql_digest...) and how long it has run, in seconds.
TopSession = tuple[Mapping[str, str], float]


class Pieces(NamedTuple):
    """A family's sample lines in order, unjoined (a copy of its column's slots), and their length
    in bytes."""

    lines: list[bytes]
    size: int

    @classmethod
    def of(cls, lines: list[bytes]) -> Pieces:
        return cls(lines, sum(map(len, lines)))


class InstanceStatus(NamedTuple):
    """One instance as the landing page shows it; stored with its session collector's block."""

    instance_id: str
    instance_name: str
    project_id: str
    region: str
    up: bool
    last_error_reason: str | None
    last_success: float | None  # unix time
    sessions: int | None
    top_sessions: tuple[TopSession, ...] | None = None  # None: the top-sessions collector is off


class InstanceBlock(NamedTuple):
    """One collector's output for one instance: sample lines per family (a gauge histogram's
    buckets, `_gcount` and `_gsum` as three entries), written once and shared by both formats, and
    the instance's status when this is the block that carries it."""

    samples: dict[str, bytes]
    status: InstanceStatus | None = None


class _Column:
    """One family's sample lines, a slot per block that has the family (b"" in a freed slot). Each
    column places its own blocks: a family that one collector writes has a slot per instance, not
    per (instance, collector), so a scrape copies no slots of blocks that never have it. A family
    that a block has with no samples (no users yet) still counts: its HELP/TYPE are written, as
    prometheus_client writes them."""

    __slots__ = ("slots", "slot_of", "free", "version", "size", "joined", "joined_version")

    def __init__(self) -> None:
        # An OpenMetrics gauge histogram's column holds each instance's three parts as a tuple of
        # the text columns' own bytes: joined, they were a second copy of every instance's buckets
        # (~1.6 KB an instance) kept for scrapes that may never ask for OpenMetrics.
        self.slots: list[Slot] = []
        self.slot_of: dict[Hashable, int] = {}  # the blocks that have this family
        self.free: list[int] = []
        self.version = 0  # grows when a slot's bytes change
        self.size = 0  # bytes in all slots: a body's length without a pass over its pieces
        self.joined = b""
        self.joined_version = 0

    def set(self, key: Hashable, value: Slot | None) -> None:
        """The block's sample lines; None: the block does not have this family."""
        slot = self.slot_of.get(key)
        if value is None:
            if slot is not None:
                del self.slot_of[key]
                self.free.append(slot)
                old = self.slots[slot]
                if old:
                    self.size -= _length(old)
                    self.slots[slot] = b""
                    self.version += 1
            return
        if slot is None:
            if self.free:
                slot = self.free.pop()
            else:
                slot = len(self.slots)
                self.slots.append(b"")
            self.slot_of[key] = slot
        old = self.slots[slot]
        if old is not value and old != value:
            self.size += _length(value) - _length(old)
            self.slots[slot] = value
            self.version += 1


def _length(slot: Slot) -> int:
    return len(slot) if isinstance(slot, bytes) else sum(map(len, slot))


class _Planned(NamedTuple):
    """A family of a body as of its plan's moment: its header, column, the column's version and
    size then, and its current join or a copy of its slots to join."""

    header: bytes
    column: _Column
    version: int
    size: int
    part: bytes | list[bytes]


_Plan = list[_Planned]


def _pieces(slots: list[Slot], parts: int) -> list[bytes]:
    """A column's slots as the pieces of its body, in order (a copy)."""
    if parts == 1:
        return cast(list[bytes], slots.copy())
    # Tuples of parts; a freed slot's b"" is empty, so it adds nothing.
    return list(itertools.chain.from_iterable(cast(list[tuple[bytes, ...]], slots)))


class Store:
    """Blocks by key (an instance id, or (instance id, collector)); one column per family of
    `layouts`."""

    def __init__(self, layouts: Layouts) -> None:
        self._layouts = layouts
        self._blocks: dict[Hashable, InstanceBlock] = {}
        self._columns: dict[tuple[str, ...], _Column] = {names: _Column() for names in layouts.parts()}
        # A sample entry's name -> the columns that start with it (a text family, and an OpenMetrics
        # gauge histogram's column too).
        self._by_first: dict[str, list[tuple[tuple[str, ...], _Column]]] = {}
        for parts, column in self._columns.items():
            self._by_first.setdefault(parts[0], []).append((parts, column))
        self._refreshing: dict[bool, tuple[int, asyncio.Future[list[bytes]]]] = {}
        self._rendered: dict[bool, tuple[int, bytes]] = {}
        self._joiner: ThreadPoolExecutor | None = None  # one thread, made on the first big join
        self.generation = 0  # grows on every put and remove
        # While a body's copy of the columns is taken in steps: the puts (a block) and removes (None)
        # that came meanwhile, in order. One copy at a time.
        self._held: list[tuple[Hashable, InstanceBlock | None]] | None = None
        self._copying = asyncio.Lock()

    def put(self, key: Hashable, block: InstanceBlock) -> None:
        if self._held is not None:
            self._held.append((key, block))
            return
        previous = self._blocks.get(key)
        self._blocks[key] = block
        samples = block.samples
        # Only the columns of the families this block has, or its previous one had: a collector
        # writes a handful of the layout's families, and this runs after every run of every one.
        names: AbstractSet[str] = samples.keys()
        # (A block whose dict is the previous one's, changed in place, is written whole.)
        before: Mapping[str, bytes] = {} if previous is None or previous.samples is samples else previous.samples
        if before and names != before.keys():  # as a rule the same families
            names = names | before.keys()
        for name in names:
            lines = samples.get(name)
            # Lines the writer kept from the last run (the same object: counts that did not move)
            # are already in the family's own column.
            kept = lines is not None and before.get(name) is lines
            for parts, column in self._by_first.get(name, ()):
                if lines is None:
                    column.set(key, None)
                elif len(parts) == 1:
                    if not kept:
                        column.set(key, lines)
                else:  # the OpenMetrics gauge histogram: buckets, count and sum of an instance together
                    column.set(key, tuple([samples[part] for part in parts]))
        self.generation += 1

    def remove(self, key: Hashable) -> None:
        if self._held is not None:
            self._held.append((key, None))
            return
        block = self._blocks.pop(key, None)
        if block is not None:
            for name in block.samples:
                for _, column in self._by_first.get(name, ()):
                    column.set(key, None)
            self.generation += 1

    def keys(self) -> set[Hashable]:
        return set(self._blocks)

    def statuses(self) -> list[InstanceStatus]:
        """Every instance's status, by project, name and id."""
        return sorted((block.status for block in self._blocks.values() if block.status is not None),
                      key=lambda status: (status.project_id, status.instance_name, status.instance_id))

    def _layout(self, openmetrics: bool) -> Layout:
        return self._layouts.openmetrics if openmetrics else self._layouts.text

    def families(self, openmetrics: bool = False) -> list[tuple[bytes, list[bytes]]]:
        """Each family's header and its slots' sample lines (b"" for an instance without samples),
        for a reader in this same step: the lists are the store's own, not copies, so that picking
        a few families of 10,000 instances does not gather the others."""
        return [(header, self._slot_bytes(names)) for header, names in self._layout(openmetrics)]

    def _slot_bytes(self, names: tuple[str, ...]) -> list[bytes]:
        slots = self._columns[names].slots
        if len(names) == 1:
            return cast(list[bytes], slots)
        return [b"".join(cast(tuple[bytes, ...], slot)) for slot in slots]

    def _plan(self, openmetrics: bool) -> _Plan:
        """The body's plan, taken in one step: each family's header with its current join, or with
        a copy of its slots to join; every part of the body is then of this moment. Families no
        instance has are left out."""
        return list(self._planning(openmetrics))

    def _planning(self, openmetrics: bool) -> Iterator[_Planned]:
        """The plan's families one at a time, each as of the moment it is taken."""
        for header, names in self._layout(openmetrics):
            column = self._columns[names]
            if not column.slot_of:
                continue
            if column.joined_version != column.version:
                yield _Planned(header, column, column.version, column.size, _pieces(column.slots, len(names)))
            else:
                yield _Planned(header, column, column.version, column.size, column.joined)

    async def _plan_in_steps(self, openmetrics: bool) -> _Plan:
        """`_plan`, taken a few columns at a time with polling going on in between: the blocks put
        or removed meanwhile are held, and applied once the plan is whole (also when the scrape is
        cancelled)."""
        async with self._copying:
            self._held = []
            try:
                plan: _Plan = []
                copied = 0
                for planned in self._planning(openmetrics):
                    plan.append(planned)
                    if isinstance(planned.part, list):
                        copied += len(planned.part)
                        if copied >= SNAPSHOT_STEP_SLOTS:
                            copied = 0
                            await asyncio.sleep(0)
                return plan
            finally:
                held, self._held = self._held, None
                for key, block in held:
                    if block is None:
                        self.remove(key)
                    else:
                        self.put(key, block)

    def render(self, openmetrics: bool = False) -> bytes:
        """Every instance's families, text format 0.0.4 or OpenMetrics (without `# EOF`), in one
        piece, joined on the event loop (tests, tools); kept until the next change."""
        cached = self._rendered.get(openmetrics)
        if cached is not None and cached[0] == self.generation:
            return cached[1]
        plan = self._plan(openmetrics)
        body = b"".join(self._assemble(plan, _join_each(_copies(plan))))
        self._rendered[openmetrics] = (self.generation, body)
        return body

    async def pieces(self, openmetrics: bool = False) -> tuple[list[bytes | Pieces], int]:
        """The body for a sender that writes lists of pieces itself (from a thread), and its
        length: a family whose join is current is that join, a small one (up to KEEP_JOIN_BYTES)
        is joined here and kept, and any other is a copy of its slots (pointers), never joined. A
        big body is then never held twice: at 20,000 instances the joins were a second copy of
        most of its ~190 MB."""
        parts: list[bytes | Pieces] = []
        size = 0
        # The sizes as of the plan: blocks held while it was taken are in the columns by now.
        for header, column, version, column_size, part in await self._plan_in_steps(openmetrics):
            sent: bytes | Pieces
            if isinstance(part, bytes):
                sent = part
            elif column_size <= KEEP_JOIN_BYTES:
                sent = b"".join(part)
                column.joined, column.joined_version = sent, version
            else:
                sent = Pieces(part, column_size)
            parts += (header, sent)
            size += len(header) + column_size  # a join's length is its column's size
        return parts, size

    async def body(self, openmetrics: bool = False) -> list[bytes]:
        """`render` as parts, with the changed families re-joined (in a thread when big); scrapes
        that ask while a refresh runs share it."""
        generation = self.generation
        refreshing = self._refreshing.get(openmetrics)
        if refreshing is None or refreshing[0] != generation:
            refreshing = (generation, asyncio.ensure_future(self._refresh(openmetrics)))
            self._refreshing[openmetrics] = refreshing
        future = refreshing[1]
        try:
            return await asyncio.shield(future)
        finally:
            if self._refreshing.get(openmetrics) is refreshing and future.done():
                del self._refreshing[openmetrics]

    async def _refresh(self, openmetrics: bool) -> list[bytes]:
        plan = await self._plan_in_steps(openmetrics)
        copies = _copies(plan)
        if sum(map(len, copies)) < THREAD_PIECES:
            return self._assemble(plan, _join_each(copies))
        if self._joiner is None:
            self._joiner = background_executor(1, "htap-join")
        return self._assemble(plan, await asyncio.get_running_loop().run_in_executor(self._joiner, _join_each, copies))

    @staticmethod
    def _assemble(plan: _Plan, bodies: list[bytes]) -> list[bytes]:
        """The body's parts from the plan, the fresh joins kept in their columns for later scrapes."""
        fresh = iter(bodies)
        parts: list[bytes] = []
        for header, column, version, _, part in plan:
            if isinstance(part, list):
                body = next(fresh)
                if column.joined_version < version:
                    if len(body) <= KEEP_JOIN_BYTES:
                        column.joined, column.joined_version = body, version
                    else:
                        column.joined, column.joined_version = b"", 0  # stale: let it go
            else:
                body = part
            parts += (header, body)
        return parts


def _copies(plan: _Plan) -> list[list[bytes]]:
    """The slot copies of a plan's families to join, in order."""
    return [planned.part for planned in plan if isinstance(planned.part, list)]


def _join_each(copies: list[list[bytes]]) -> list[bytes]:
    return [b"".join(copy) for copy in copies]
