"""Poller scheduling in virtual time: spread, back-off, Retry-After, skipped ticks, reload."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses

from htap_exporter.config import (Config, InstanceConfig, MetricsConfig, PollConfig, ProjectConfig, Secret, SecretSource,
                             TokenAuth)
from htap_exporter.runtime.scheduler import APPLY_CHUNK, JITTER, MAX_RETRY_AFTER, Scheduler, backoff_delay, on_grid
from htap_exporter.cloud.clients import ClientFactory
from htap_exporter.collectors.registry import CollectorSet
from htap_exporter.redact import Redactor
from htap_exporter.exposition.store import Store
from htap_exporter.cloud.transport import ApiError

from tests.fakes import EPOCH, FakeApi, FakeClients, FakeClock, FakeSessionsCollector, MidpointRandom, session, make_store

ENDPOINT = "https://gaussdb.cn-north-4.myhuaweicloud.com"
IAM = "https://iam.cn-north-4.myhuaweicloud.com"
P1, P2, P3 = ("1" * 32, "2" * 32, "3" * 32)


def iid(n: int) -> str:
    return f"{n:032x}in17"


A, B, C, D, E = (iid(n) for n in range(0xA, 0xF))


def project(project_id: str, *instances: tuple[str, str], token: str = "static-token-0123456789") -> ProjectConfig:
    return ProjectConfig(project_id=project_id, region="cn-north-4", endpoint=ENDPOINT, iam_endpoint=IAM,
                         auth=TokenAuth(token=SecretSource(value=Secret(token))),
                         instances=tuple(InstanceConfig(id=i, name=name) for i, name in instances))


def config(*projects: ProjectConfig, interval: float = 10.0, **poll) -> Config:
    return Config(file="test.yaml", poll=PollConfig(interval=interval, timeout=min(5.0, interval), **poll),
                  projects=projects)


def samples(store: Store) -> dict[str, float]:
    """Exposition text -> {'name{labels}': value} (enough for exact assertions)."""
    found = {}
    for line in store.render().decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def labels(instance_id: str, name: str, **extra: str) -> str:
    # prometheus_client writes label pairs sorted by name
    pairs = sorted({"instance_id": instance_id, "instance_name": name, **extra}.items())
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


class Env:
    """A Scheduler on a FakeClock whose clients are one FakeApi (no HTTP at all)."""

    def __init__(self, poller: Scheduler, clock: FakeClock, api: FakeApi, store: Store,
                 api_projects: list[str]) -> None:
        self.poller = poller
        self.clock = clock
        self.api = api
        self.store = store
        self.api_projects = api_projects  # project ids a client was made for
        self.start = clock.monotonic()

    def calls(self, instance_id: str) -> list[float]:
        return [when - self.start for when in self.api.calls_for(instance_id)]

    def stored_instances(self) -> set[str]:
        return {instance_id for instance_id, _ in self.store.keys()}

    async def apply(self, config: Config) -> None:
        await self.poller.apply(config, (FakeSessionsCollector(config.poll.interval),))

    async def run_until(self, seconds: float) -> None:
        await self.clock.run_until(self.start + seconds)


@pytest.fixture
async def env():
    clock = FakeClock()
    store = make_store()
    api = FakeApi(clock)
    clients = FakeClients(api)
    poller = Scheduler(store=store, clock=clock, clients=clients, rng=MidpointRandom())  # type: ignore[arg-type]
    try:
        yield Env(poller, clock, api, store, clients.projects)
    finally:
        await poller.stop()


# --- backoff_delay -------------------------------------------------------------------------------------

def test_backoff_doubles_from_the_interval_up_to_the_cap():
    mid = MidpointRandom(0.5)
    assert [backoff_delay(n, 10.0, 100.0, mid) for n in range(1, 8)] == [10, 20, 40, 80, 100, 100, 100]
    assert backoff_delay(10_000, 10.0, 100.0, mid) == 100  # no overflow for long outages
    assert backoff_delay(1, 30.0, 300.0, MidpointRandom(0.0)) == pytest.approx(27.0)
    assert backoff_delay(1, 30.0, 300.0, MidpointRandom(1.0)) == pytest.approx(33.0)
    assert backoff_delay(9, 30.0, 300.0, MidpointRandom(1.0)) == pytest.approx(330.0)


def test_backoff_jitter_stays_within_ten_percent():
    rng = random.Random(1234)
    assert JITTER == 0.1
    for failures, base in [(1, 15.0), (2, 30.0), (3, 60.0), (5, 150.0), (50, 150.0)]:
        values = [backoff_delay(failures, 15.0, 150.0, rng) for _ in range(500)]
        assert all(0.9 * base <= v <= 1.1 * base for v in values)
        assert max(values) - min(values) > 0.1 * base  # it really is jittered


@pytest.mark.parametrize("interval,backoff_max,cap", [
    (30.0, None, 300.0), (10.0, None, 100.0), (60.0, None, 300.0), (600.0, None, 600.0), (10.0, 45.0, 45.0)])
def test_backoff_cap(interval, backoff_max, cap):
    assert PollConfig(interval=interval, backoff_max=backoff_max).backoff_cap == cap


# --- scheduling ------------------------------------------------------------------------------------------

async def test_first_polls_spread_over_the_interval(env):
    await env.apply(config(project(P1, (A, "a"), (B, "b"), (C, "c"), (D, "d")), interval=20.0))
    await env.run_until(19.5)
    assert [env.calls(i) for i in (A, B, C, D)] == [[0.0], [5.0], [10.0], [15.0]]
    assert env.poller.ready.is_set()
    await env.run_until(59.5)
    assert [env.calls(i) for i in (A, B, C, D)] == [
        [0.0, 20.0, 40.0], [5.0, 25.0, 45.0], [10.0, 30.0, 50.0], [15.0, 35.0, 55.0]]


def test_the_grid_is_half_a_second_or_a_tenth_of_a_shorter_interval():
    assert [on_grid(1000.01, interval) for interval in (1.0, 2.0, 5.0, 30.0, 600.0)] == [
        1000.1, 1000.2, 1000.5, 1000.5, 1000.5]
    assert on_grid(1000.0, 5.0) == 1000.0  # a moment on the grid stays
    rng = random.Random(5)
    for _ in range(1000):
        moment, interval = rng.uniform(0, 1e6), rng.choice([1.0, 5.0, 7.0, 30.0, 3600.0])
        step = min(0.5, interval / 10)
        start = on_grid(moment, interval)
        assert moment <= start < moment + step + 1e-6
        assert abs(start / step - round(start / step)) < 1e-6


async def test_runs_start_on_the_grid_once_per_interval_in_their_place(env):
    """Seven instances every 5 s: each run starts at its place in the interval rounded up to the grid
    (0.5 s), and the next one an interval later, never drifting by the rounding."""
    instances = [(iid(n), f"i{n}") for n in range(7)]
    await env.apply(config(project(P1, *instances), interval=5.0))
    await env.run_until(14.9)
    places = [0.0, 1.0, 1.5, 2.5, 3.0, 4.0, 4.5]  # 5 * n / 7 rounded up to half a second
    assert [env.calls(instance_id) for instance_id, _ in instances] == [
        [place, place + 5.0, place + 10.0] for place in places]


async def test_ready_only_after_every_first_poll(env):
    await env.apply(config(project(P1, (A, "a"), (B, "b")), interval=10.0))
    await env.run_until(4.5)
    assert not env.poller.ready.is_set()
    await env.run_until(5.0)
    assert env.poller.ready.is_set()


async def test_failed_poll_sets_up_0_and_drops_session_series(env):
    def behaviour(instance_id, n):
        if n == 1:
            return [session("1", command="Query", duration=12), session("2", command="Sleep", duration=300)]
        raise ApiError("http", "HTTP 500", status=500, error_code="DBS.05000000")

    env.api.behaviour = behaviour
    await env.apply(config(project(P1, (A, "orders"))))
    await env.run_until(0)
    first = samples(env.store)
    assert first["htap_up" + labels(A, "orders")] == 1
    assert first["htap_sessions" + labels(A, "orders")] == 2
    assert first["htap_sessions_by_command" + labels(A, "orders", command="Sleep")] == 1
    assert first["htap_session_max_duration_seconds" + labels(A, "orders", command="Query")] == 12
    assert first["htap_last_poll_success_timestamp_seconds" + labels(A, "orders")] == EPOCH + env.start
    assert first["htap_poll_errors_total" + labels(A, "orders", reason="http")] == 0

    await env.run_until(10)
    second = samples(env.store)
    assert second["htap_up" + labels(A, "orders")] == 0
    assert not [key for key in second if key.startswith("htap_session")]
    assert not [key for key in second if key.startswith("htap_active_session")]
    assert second["htap_poll_errors_total" + labels(A, "orders", reason="http")] == 1
    assert second["htap_last_poll_success_timestamp_seconds" + labels(A, "orders")] == EPOCH + env.start
    state = env.poller._loops[(A, "sessions")].state
    assert (state.up, state.output) == (False, None)


async def test_backoff_schedule_then_reset_on_success(env):
    def behaviour(instance_id, n):
        if n <= 6:
            raise ApiError("http", "HTTP 503", status=503)
        return []

    env.api.behaviour = behaviour
    await env.apply(config(project(P1, (A, "a")), interval=10.0))  # cap: 100 s
    await env.run_until(375)
    assert env.calls(A) == [0, 10, 30, 70, 150, 250, 350, 360, 370]
    assert env.poller._loops[(A, "sessions")].failures == 0
    assert env.poller._loops[(A, "sessions")].state.errors["http"] == 6


@pytest.mark.parametrize("retry_after,next_poll", [
    (120.0, 120.0),  # longer than the back-off: honoured
    (1.0, 10.0),  # shorter than the back-off: the back-off wins
    (1e9, MAX_RETRY_AFTER),  # absurd: capped
])
async def test_retry_after_raises_the_delay(env, retry_after, next_poll):
    def behaviour(instance_id, n):
        if n == 1:
            raise ApiError("throttled", "throttled by the API", status=429, retry_after=retry_after)
        return []

    env.api.behaviour = behaviour
    await env.apply(config(project(P1, (A, "a")), interval=10.0))
    await env.run_until(next_poll + 10.5)
    assert env.calls(A) == [0, next_poll, next_poll + 10]
    assert env.poller._loops[(A, "sessions")].state.errors["throttled"] == 1


async def test_slow_poll_skips_ticks_and_never_overlaps(env):
    async def slow(instance_id, n):
        await env.clock.sleep(25)
        return [session(str(n))]

    env.api.behaviour = lambda instance_id, n: slow(instance_id, n) if instance_id == A else []
    await env.apply(config(project(P1, (A, "slow"), (B, "fast")), interval=10.0))
    await env.run_until(95)
    assert env.calls(A) == [0, 30, 60, 90]
    assert env.api.max_in_flight[A] == 1
    state = env.poller._loops[(A, "sessions")].state
    assert state.skipped_ticks == 6  # 2 ticks skipped by each of the 3 finished polls
    assert state.run_duration == 25
    assert samples(env.store)["htap_poll_skipped_ticks_total" + labels(A, "slow")] == 6
    # the slow instance never delays the other one
    assert env.calls(B) == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95]
    assert env.poller._loops[(B, "sessions")].state.skipped_ticks == 0


async def test_a_poll_that_never_ends_is_abandoned_as_a_timeout(env):
    async def endless_paging(instance_id, n):
        await env.clock.sleep(1000 if n == 1 else 1)
        return [session("1")]

    env.api.behaviour = endless_paging
    await env.apply(config(project(P1, (A, "a")), interval=10.0))
    await env.run_until(31)
    state = env.poller._loops[(A, "sessions")].state
    assert (state.up, state.errors["timeout"], state.run_duration) == (False, 1, 30)  # 3 intervals
    await env.run_until(45)  # back-off after one failure: one interval, then the poll succeeds
    assert env.poller._loops[(A, "sessions")].state.up is True
    assert env.api.max_in_flight[A] == 1


async def test_unexpected_exception_costs_one_poll(env):
    def behaviour(instance_id, n):
        if n == 1:
            raise RuntimeError("a bug")
        return []

    env.api.behaviour = behaviour
    await env.apply(config(project(P1, (A, "a")), interval=10.0))
    await env.run_until(10)
    assert env.calls(A) == [0, 10]
    state = env.poller._loops[(A, "sessions")].state
    assert (state.up, state.errors["bad_response"]) == (True, 1)


# --- reload -------------------------------------------------------------------------------------------------

async def test_apply_keeps_unchanged_restarts_changed_removes_dropped(env):
    def behaviour(instance_id, n):
        if instance_id == B and n == 1:
            raise ApiError("http", "HTTP 500", status=500)
        return [session("1")]

    env.api.behaviour = behaviour
    first = config(project(P1, (A, "a"), (B, "b")), project(P2, (C, "c")), interval=30.0)
    await env.apply(first)
    await env.run_until(25)
    assert env.stored_instances() == {A, B, C}
    loop_a, loop_b = env.poller._loops[(A, "sessions")], env.poller._loops[(B, "sessions")]
    state_b, task_b = loop_b.state, loop_b.task
    assert state_b.errors["http"] == 1
    assert sorted(env.api_projects) == [P1, P2]

    # B renamed, C's project dropped, D added in a new project, A untouched
    second = config(project(P1, (A, "a"), (B, "b-renamed")), project(P3, (D, "d")), interval=30.0)
    await env.apply(second)
    await env.clock.advance(0)
    assert set(env.poller._loops) == {(A, "sessions"), (B, "sessions"), (D, "sessions")}
    assert env.poller._loops[(A, "sessions")] is loop_a and not loop_a.task.done()
    assert env.poller._loops[(B, "sessions")] is not loop_b and task_b.cancelled()
    assert loop_b.task is None  # a stopped loop lets go of its task: no cycle for the collector
    assert env.poller._loops[(B, "sessions")].state is state_b  # counters survive the restart
    assert C not in env.stored_instances()
    assert (C, "sessions") not in env.poller._states
    assert sorted(env.api_projects) == [P1, P2, P3]  # P1's API (auth gate, token cache) kept

    await env.run_until(40)
    assert env.calls(A) == [0, 30]  # cadence kept, not re-polled at the reload
    rendered = samples(env.store)
    assert rendered["htap_poll_errors_total" + labels(B, "b-renamed", reason="http")] == 1
    assert not [key for key in rendered if C in key]
    assert env.stored_instances() == {A, B, D}


async def test_apply_with_an_added_instance_keeps_the_others(env):
    await env.apply(config(project(P1, (A, "a")), interval=30.0))
    await env.run_until(1)
    loop_a = env.poller._loops[(A, "sessions")]
    await env.apply(config(project(P1, (A, "a"), (B, "b")), interval=30.0))
    await env.run_until(31)
    assert env.poller._loops[(A, "sessions")] is loop_a
    assert env.calls(A) == [0, 30]
    assert env.calls(B) == [1, 31]
    assert env.api_projects == [P1]


async def test_apply_with_a_new_poll_config_restarts_everything(env):
    await env.apply(config(project(P1, (A, "a"), (B, "b")), interval=30.0))
    await env.run_until(20)
    loops = dict(env.poller._loops)
    await env.apply(config(project(P1, (A, "a"), (B, "b")), interval=10.0))
    await env.run_until(40)
    assert all(env.poller._loops[(i, "sessions")] is not loops[(i, "sessions")] for i in (A, B))
    assert env.calls(A) == [0, 20, 30, 40]
    assert env.calls(B) == [15, 25, 35]


async def test_apply_with_nothing_to_poll_is_ready_and_stop_ends_loops(env):
    await env.apply(config(project(P1, (A, "a"))))
    await env.run_until(1)
    task = env.poller._loops[(A, "sessions")].task
    await env.apply(config())
    assert env.poller.ready.is_set()
    assert task.cancelled()
    assert env.stored_instances() == set()


async def test_stop_cancels_every_loop_before_it_waits_for_any(env):
    """Stopped a chunk at a time, the loops of the later chunks went on polling while the earlier
    ones were waited for: a stop cancels them all first."""
    many = [(iid(n), f"db{n}") for n in range(1, 2 * APPLY_CHUNK + 2)]
    await env.apply(config(project(P1, *many)))
    await env.run_until(1)
    tasks = [loop.task for loop in env.poller._loops.values()]
    assert len(tasks) == len(many) and not any(task.done() for task in tasks)
    stopping = asyncio.create_task(env.poller.stop())
    await asyncio.sleep(0)  # the stop runs up to its first wait: for the first chunk
    assert all(task.cancelling() or task.done() for task in tasks)
    await stopping
    assert all(task.cancelled() for task in tasks)


def test_polls_share_one_label_cache_until_the_label_length_changes():
    collectors = CollectorSet(lambda: EPOCH)
    first = collectors.enabled(Config(file="t.yaml", projects=(), metrics=MetricsConfig(max_label_length=64)))[0]
    again = collectors.enabled(Config(file="t.yaml", projects=(), metrics=MetricsConfig(max_label_length=64, max_users=3)))[0]
    assert again.labels is first.labels  # type: ignore[attr-defined]
    reloaded = collectors.enabled(Config(file="t.yaml", projects=(), metrics=MetricsConfig(max_label_length=200)))[0]
    assert reloaded.labels is not first.labels and reloaded.labels.max_length == 200  # type: ignore[attr-defined]


# --- the real stack under a wrong key ------------------------------------------------------------------------

async def test_wrong_token_across_five_instances_real_stack():
    """No fakes but the clock: real Scheduler, session collector, ProjectClient, Transport and token
    auth against a mocked 401."""
    clock = FakeClock()
    store = make_store()
    start = clock.monotonic()
    sent_at: list[float] = []

    def rejected(url, **kwargs):
        sent_at.append(clock.monotonic() - start)
        return CallbackResult(status=401, payload={"error_code": "APIG.0301", "error_msg": "decrypt token fail"})

    ids = [iid(n) for n in range(1, 6)]
    with aioresponses() as mock:
        for instance_id in ids:
            mock.get(f"{ENDPOINT}/v3/{P1}/instances/{instance_id}/htap/process?limit=100&offset=0",
                     callback=rejected, repeat=True)
        async with aiohttp.ClientSession() as http:
            clients = ClientFactory(session=http, clock=clock, redactor=Redactor(),
                                    observe=lambda api, code, seconds: None)
            poller = Scheduler(store=store, clock=clock, clients=clients, rng=random.Random(7))
            try:
                polled = config(project(P1, *[(i, f"db{n}") for n, i in enumerate(ids)]), interval=1.0)
                await poller.apply(polled, CollectorSet(clock.time).enabled(polled))
                await clock.run_until(start + 59.9)
                assert len(sent_at) == 3  # t=0, then after the 15 s and 30 s pauses
                assert sent_at[:1] == [0.0]
                await clock.run_until(start + 600)
                assert len(sent_at) == 6
                gaps = [later - earlier for earlier, later in zip(sent_at, sent_at[1:])]
                assert all(gap >= pause for gap, pause in zip(gaps, [15, 30, 60, 120, 240]))
                rendered = samples(store)
                for n, instance_id in enumerate(ids):
                    assert rendered["htap_up" + labels(instance_id, f"db{n}")] == 0
                    assert rendered["htap_poll_errors_total" + labels(instance_id, f"db{n}", reason="auth")] >= 1
            finally:
                await poller.stop()


# --- what review found: a renamed instance, a slow collector failing ---------------------------------------

async def test_a_renamed_instance_serves_nothing_under_its_old_name(env):
    env.api.behaviour = lambda instance_id, n: [session("1"), session("2", command="Sleep")]
    await env.apply(config(project(P1, (A, "old-name"), (B, "b")), interval=10.0))
    await env.run_until(15)
    assert 'instance_name="old-name"' in env.store.render().decode()
    await env.apply(config(project(P1, (A, "new-name"), (B, "b")), interval=10.0))
    text = env.store.render().decode()
    assert 'instance_name="old-name"' not in text  # its sessions wait for the next poll instead
    assert env.poller._loops[(A, "sessions")].state.errors["http"] == 0  # counters kept
    await env.run_until(40)
    assert f'htap_sessions{{instance_id="{A}",instance_name="new-name"}} 2.0' in env.store.render().decode()


@dataclass(frozen=True)
class FailingCollector:
    """A collector with its own (long) interval whose every run fails."""

    interval: float
    calls: list[float] = field(default_factory=list, compare=False)
    name: str = "slow"
    families: tuple = ()
    riders: tuple[str, ...] = ()
    reports_up: bool = False

    async def collect(self, instance, client):
        self.calls.append(client.clock.monotonic())
        raise ApiError("http", "broken", status=500)


async def test_a_failing_collector_is_never_retried_more_often_than_its_interval(env):
    slow = FailingCollector(600.0)
    polled = config(project(P1, (A, "a")), interval=30.0)  # the session poll's back-off cap: 300 s
    await env.poller.apply(polled, (FakeSessionsCollector(30.0), slow))
    await env.run_until(4000)
    gaps = [later - earlier for earlier, later in zip(slow.calls, slow.calls[1:])]
    assert len(gaps) >= 4 and min(gaps) >= 600 * 0.9
