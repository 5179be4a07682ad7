"""Test doubles: a virtual-time clock, a recording transport, a controllable rng and a fake API.

Nothing here sleeps for real. `FakeClock.sleep` parks the caller on a future that only
`FakeClock.advance`/`run_until` resolves, in wake-up order, letting the event loop settle
(run every runnable callback) between wake-ups, so a schedule is replayed deterministically.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from yarl import URL

from htap_exporter.clock import Clock
from htap_exporter.config import MetricsConfig
from htap_exporter.collectors.base import CollectorOutput
from htap_exporter.collectors.sessions.counting import Session, SessionCounter
from htap_exporter.collectors.sessions.families import FAMILIES as SESSION_FAMILIES, session_samples
from htap_exporter.collectors.sessions.fetch import SessionList
from htap_exporter.cloud.auth import Authenticator, OutgoingRequest
from htap_exporter.cloud.client import ProjectClient
from htap_exporter.cloud.transport import Prepare, Response, Transport

EPOCH = 1_700_000_000.0


class RunningSimulator:
    """A simulator serving on loopback: the object (for faults and observations) and its URL."""

    def __init__(self, simulator: Any, base_url: str) -> None:
        self.sim = simulator
        self.base_url = base_url


async def settle(max_rounds: int = 2000) -> None:
    """Run the event loop until nothing is runnable any more (every task waits on a future).

    Uses the loop's ready queue when it is visible (the default asyncio loop); otherwise falls back
    to a fixed number of rounds. No real time passes and no timer is involved.
    """
    loop = asyncio.get_running_loop()
    idle = 0
    for _ in range(max_rounds):
        await asyncio.sleep(0)
        ready = getattr(loop, "_ready", None)
        if ready is None:
            continue
        if ready:
            idle = 0
        else:
            idle += 1
            if idle >= 3:
                return


class FakeClock(Clock):
    """htap_exporter.clock.Clock in virtual time: monotonic() starts at `start`, time() = EPOCH + monotonic()."""

    def __init__(self, start: float = 1000.0, epoch: float = EPOCH) -> None:
        self.now = float(start)
        self.epoch = epoch
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._parked: list[asyncio.Future[None]] = []  # wait_for_sleepers() callers
        self.sleeps: list[float] = []  # every duration asked of sleep(), in order

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.epoch + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), future))
        self._wake_parked()
        await future

    def call_later(self, seconds: float, callback: Callable[[], None]) -> "_FakeTimer":
        timer = _FakeTimer(callback)
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._seq), timer))
        return timer

    def tick(self, seconds: float) -> None:
        """Plain time injection, for code that only reads the clock."""
        self.now += seconds

    @property
    def pending(self) -> int:
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def wait_for_sleepers(self, count: int) -> None:
        """Until `count` sleepers are parked on this clock: a task that does real I/O between two
        sleeps (HTTP to the simulator) is back asleep. No real time is counted; bound it by the caller."""
        while self.pending < count:
            parked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._parked.append(parked)
            await parked

    def _wake_parked(self) -> None:
        parked, self._parked = self._parked, []
        for future in parked:
            if not future.done():
                future.set_result(None)

    async def advance(self, seconds: float) -> None:
        await self.run_until(self.now + seconds)

    async def run_until(self, target: float) -> None:
        """Wake every sleeper due up to `target` in order, settling the loop after each one."""
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            wake_at, _, future = heapq.heappop(self._sleepers)
            if future.done():  # its sleeper was cancelled
                continue
            self.now = max(self.now, wake_at)
            future.set_result(None)
            await settle()
        self.now = max(self.now, target)
        await settle()


class _FakeTimer:
    """A FakeClock timer: wakes up in order with the sleepers; 'waking' runs the callback."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self._callback = None

    def done(self) -> bool:
        return self._callback is None

    def set_result(self, _: None) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()


class MidpointRandom:
    """An rng whose uniform() returns a chosen point of the range: 0.0 low end, 0.5 middle, 1.0 high end."""

    def __init__(self, point: float = 0.5) -> None:
        self.point = point

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.point

    def random(self) -> float:
        return self.point


@dataclass
class SentRequest:
    api: str
    method: str
    url: URL
    headers: dict[str, str]
    body: bytes
    continuing: bool = False  # sent as the next request of a walk under way


@dataclass
class RecordingTransport(Transport):
    """The real Transport, remembering exactly what it was asked to send (URL as sent on the wire)."""

    sent: list[SentRequest] = field(default_factory=list)

    async def send_prepared(self, api: str, method: str, prepare: Prepare, body: bytes = b"",
                            limiter: Any = None, *, capped: bool = True, continuing: bool = False) -> Response:
        async def recorded() -> tuple[URL, dict[str, str]]:
            url, headers = await prepare()
            self.sent.append(SentRequest(api, method, url, dict(headers), body, continuing))
            return url, headers

        return await super().send_prepared(api, method, recorded, body, limiter, capped=capped,
                                           continuing=continuing)


class FixedBodyTransport:
    """Answers every request with the same 200 body (which a test may change between calls)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.calls = 0

    async def send_prepared(self, api: str, method: str, prepare: Prepare, body: bytes = b"", limiter: Any = None,
                            *, capped: bool = True, continuing: bool = False) -> Response:
        await prepare()
        self.calls += 1
        return Response(200, {}, self.body)


class NoAuth(Authenticator):
    async def prepare(self, request: OutgoingRequest) -> tuple[URL, dict[str, str]]:
        return request.url(""), {}


def fixed_body_client(transport: FixedBodyTransport, max_pages: int) -> ProjectClient:
    """A real ProjectClient whose every request is answered by `transport`."""
    return ProjectClient(endpoint="https://gaussdb.cn-north-4.myhuaweicloud.com", project_id="p" * 32,
                         auth=NoAuth(Clock()), transport=transport, max_pages=max_pages)  # type: ignore[arg-type]


class FakeApi:
    """Stands in for a ProjectClient in scheduler tests: each call runs `behaviour(instance_id, call_number)`.

    The behaviour may return a list of Sessions, raise an ApiError, or be a coroutine function (to
    take virtual time with clock.sleep). Calls and the number of concurrent calls are recorded.
    """

    def __init__(self, clock: FakeClock,
                 behaviour: Callable[[str, int], Any] | None = None) -> None:
        self.clock = clock
        self.behaviour = behaviour or (lambda instance_id, n: [])
        self.calls: list[tuple[str, float]] = []  # (instance_id, clock.monotonic() at start)
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}

    def calls_for(self, instance_id: str) -> list[float]:
        return [when for iid, when in self.calls if iid == instance_id]

    def poll_interval(self, configured: float) -> float:
        return configured

    def stretch(self, poll_interval: float) -> float:
        return 1.0

    async def list_sessions(self, instance_id: str, counter: SessionCounter | None = None) -> SessionList:
        number = len(self.calls_for(instance_id)) + 1
        self.calls.append((instance_id, self.clock.monotonic()))
        self.in_flight[instance_id] = self.in_flight.get(instance_id, 0) + 1
        self.max_in_flight[instance_id] = max(self.max_in_flight.get(instance_id, 0),
                                              self.in_flight[instance_id])
        try:
            result = self.behaviour(instance_id, number)
            if inspect.isawaitable(result):
                result = await result
            sessions = list(result)
            counter = counter or SessionCounter(MetricsConfig())
            counter.add_page([{"id": s.id, "user": s.user, "host": s.host, "state": s.state, "database": s.database,
                               "command": s.command, "duration": s.duration} for s in sessions])
            return SessionList(counter.result(), 1, 0, sessions)
        finally:
            self.in_flight[instance_id] -= 1


def session(sid: str, *, command: str = "Query", duration: float | None = 1.0, user: str = "app",
            state: str = "OK", database: str = "db", host: str = "10.0.0.1:5000") -> Session:
    return Session(id=sid, user=user, host=host, state=state, database=database, command=command,
                   duration=duration)


class FakeClients:
    """Stands in for the ClientFactory: every project gets the same client; records which projects
    a client was made for (made once per project and poll settings, as the real factory does)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._made: set[Any] = set()
        self._poll: Any = None
        self.projects: list[str] = []  # project ids a client was made for, in order

    def client(self, project: Any, poll: Any) -> Any:
        from htap_exporter.cloud.clients import client_key
        if poll != self._poll:
            self._poll, self._made = poll, set()
        key = client_key(project)
        if key not in self._made:
            self._made.add(key)
            self.projects.append(project.project_id)
        return self._client

    def keep_only(self, projects: Any) -> None:
        from htap_exporter.cloud.clients import client_key
        self._made &= {client_key(project) for project in projects}


@dataclass(frozen=True)
class FakeSessionsCollector:
    """The session collector's part the scheduler sees, reading sessions from a FakeApi."""

    interval: float
    name: str = "sessions"
    families: tuple = SESSION_FAMILIES
    riders: tuple[str, ...] = ()
    reports_up: bool = True

    async def collect(self, instance: Any, client: FakeApi) -> CollectorOutput:
        result = await client.list_sessions(instance.instance_id)
        return CollectorOutput(session_samples(instance.writer, result.stats), sessions=result.stats.sessions)


def make_store() -> Any:
    """A store laid out for every family the exporter has."""
    from htap_exporter.collectors.registry import all_families
    from htap_exporter.exposition.families import Layouts
    from htap_exporter.exposition.store import Store
    from htap_exporter.runtime.state import layout_families
    return Store(Layouts.of(layout_families(all_families())))


@dataclass
class PollState:
    """A session poll's outcome as tests state it (stats, not rendered output); see render_instance."""

    up: bool = False
    stats: Any = None
    poll_duration: float | None = None
    last_success: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    skipped_ticks: int = 0
    last_error_reason: str | None = None
    pending: bool = False


def render_instance(identity: Any, state: PollState) -> Any:
    """The session collector's block for `state`, through the same path the scheduler takes."""
    from htap_exporter.cloud.errors import REASONS
    from htap_exporter.runtime.state import RunState, render_block
    output = None
    if state.stats is not None:
        output = CollectorOutput(session_samples(identity.writer, state.stats), sessions=state.stats.sessions)
    run = RunState(up=state.up, output=output, run_duration=state.poll_duration, last_success=state.last_success,
                   errors={reason: state.errors.get(reason, 0) for reason in REASONS},
                   failed_runs=sum(state.errors.values()),
                   skipped_ticks=state.skipped_ticks, last_error_reason=state.last_error_reason, pending=state.pending)
    return render_block(identity, "sessions", run, reports_up=True)


def documentation() -> dict[str, str]:
    """Every family's HELP text, by name."""
    from htap_exporter.collectors.registry import all_families
    from htap_exporter.runtime.state import layout_families
    return {family.name: family.help for family in layout_families(all_families())}


def make_hostile_file(path: Path, kind: str) -> None:
    """Turn `path` into a FIFO nobody writes to ("fifo"), a link to /dev/zero ("dev_zero"), or a
    20 MB file (anything else)."""
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    else:
        with open(path, "wb") as handle:
            handle.truncate(20 * 1024 * 1024)
