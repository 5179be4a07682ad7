"""The project's API budget: a token bucket with a short burst, and the cadence it sustains."""

from __future__ import annotations

import pytest

import asyncio

from htap_exporter.collectors.sessions.fetch import list_sessions
from htap_exporter.cloud.budget import POLL_SHARE, ApiBudget
from htap_exporter.clock import RateLimiter
from tests.fakes import FakeClock


async def start_times(limiter: RateLimiter, clock: FakeClock, callers: int, horizon: float) -> list[float]:
    started: list[float] = []

    async def caller() -> None:
        await limiter.wait()
        started.append(clock.monotonic())

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    await clock.advance(horizon)
    await asyncio.gather(*tasks)
    return started


async def test_bucket_allows_a_burst_then_spaces_calls(clock: FakeClock):
    limiter = RateLimiter(4.0, clock, burst=4)
    started = await start_times(limiter, clock, 12, 10.0)
    offsets = [round(t - 1000.0, 6) for t in started]
    assert offsets == [0, 0, 0, 0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]


async def test_burst_one_is_plain_spacing(clock: FakeClock):
    limiter = RateLimiter(2.0, clock)
    started = await start_times(limiter, clock, 4, 10.0)
    assert [t - 1000.0 for t in started] == [0, 0.5, 1.0, 1.5]


async def test_an_idle_bucket_refills_only_up_to_the_burst(clock: FakeClock):
    limiter = RateLimiter(10.0, clock, burst=5)
    await start_times(limiter, clock, 5, 1.0)
    await clock.advance(60.0)  # a long idle time buys no more than `burst` calls at once
    started = await start_times(limiter, clock, 8, 5.0)
    first = started[0]
    assert [round(t - first, 6) for t in started] == [0, 0, 0, 0, 0, 0.1, 0.2, 0.3]


async def test_no_window_exceeds_rate_times_length_plus_burst(clock: FakeClock):
    rate, burst = 5.0, 5
    limiter = RateLimiter(rate, clock, burst=burst)
    started = await start_times(limiter, clock, 200, 60.0)
    assert len(started) == 200
    for window in (0.5, 1.0, 3.0, 10.0):
        for index, first in enumerate(started):
            in_window = sum(1 for t in started[index:] if t < first + window)
            assert in_window <= burst + rate * window, (window, first, in_window)


async def test_waiters_are_served_in_arrival_order(clock: FakeClock):
    limiter = RateLimiter(1.0, clock)
    order: list[int] = []

    async def caller(number: int) -> None:
        await limiter.wait()
        order.append(number)

    tasks = []
    for number in range(6):
        tasks.append(asyncio.create_task(caller(number)))
        await asyncio.sleep(0)
    await clock.advance(10.0)
    await asyncio.gather(*tasks)
    assert order == list(range(6))


def test_budget_burst_is_one_second_of_rate(clock: FakeClock):
    assert ApiBudget(10.0, clock)._tolerance == 0.9
    assert ApiBudget(0.5, clock)._tolerance == 0.0  # at least one call


def test_cadence_is_kept_while_the_budget_suffices(clock: FakeClock):
    budget = ApiBudget(10.0, clock)
    budget.expect(f"i{n}" for n in range(100))
    assert budget.poll_interval(30.0) == 30.0  # 100 requests per 30 s = 3.3/s, well under 9/s


def test_a_big_fleet_stretches_the_interval_for_everyone(clock: FakeClock):
    budget = ApiBudget(10.0, clock)
    budget.expect(f"i{n}" for n in range(1000))
    usable = 10.0 * POLL_SHARE
    assert budget.poll_interval(30.0) == 1000 / usable  # 111 s: every instance, evenly
    for n in range(500):  # half the fleet needs three pages
        budget.record_poll(f"i{n}", 3)
    assert budget.poll_interval(30.0) == 2000 / usable
    budget.record_discovery(requests=301, refresh_interval=300.0)  # ~1 request/s for discovery
    assert budget.poll_interval(30.0) == 2000 / (usable - 301 / 300.0)


def test_expect_forgets_gone_instances_and_ignores_strangers(clock: FakeClock):
    budget = ApiBudget(1.0, clock)
    budget.expect(["a", "b", "c"])
    budget.record_poll("a", 4)
    budget.record_poll("zzz", 50)  # not expected: not counted
    assert budget.poll_interval(1.0) == 6 / POLL_SHARE
    budget.expect(["a", "d"])  # b and c gone, d new (one page until it is polled)
    assert budget.poll_interval(1.0) == 5 / POLL_SHARE
    budget.record_poll("a", 0)  # an empty poll still costs one request
    assert budget.poll_interval(1.0) == 2 / POLL_SHARE


def test_discovery_cannot_starve_polling_entirely(clock: FakeClock):
    budget = ApiBudget(1.0, clock)
    budget.expect(["a"])
    budget.record_discovery(requests=10_000, refresh_interval=60.0)
    assert budget.poll_interval(1.0) == 1 / (1.0 * (1 - POLL_SHARE))


async def test_iam_token_requests_are_not_counted(simulator, http, clock: FakeClock):
    """A password-auth project fetches its IAM token outside the budget: with a budget of one
    request and no burst, the first session page still goes at once after the token request."""
    from htap_exporter.cloud.client import ProjectClient
    from htap_exporter.cloud.auth import PasswordAuthenticator
    from htap_exporter.config import PasswordAuth, Secret, SecretSource
    from htap_exporter.redact import Redactor
    from htap_exporter.simulator import SIM_DOMAIN, SIM_PASSWORD, SIM_USER, instance_id_for
    from htap_exporter.cloud.transport import Transport

    sim = simulator.sim
    transport = Transport(http, asyncio.Semaphore(4), 5.0, 8 * 1024 * 1024)
    auth = PasswordAuthenticator(PasswordAuth(SIM_DOMAIN, SIM_USER, SecretSource(value=Secret(SIM_PASSWORD))),
                                 sim.project_id, simulator.base_url, transport, clock, Redactor())
    budget = ApiBudget(1.0, clock)
    api = ProjectClient(endpoint=simulator.base_url, project_id=sim.project_id, auth=auth, transport=transport,
                  max_pages=5, limiter=budget)
    sim.instances[instance_id_for(0)].fixed_rows = []
    # Virtual time does not move here: had the token request used the bucket, this would wait forever.
    await asyncio.wait_for(list_sessions(api, instance_id_for(0)), 10)
    assert sim.observed.iam_requests == 1 and sim.observed.requests[instance_id_for(0)] == 1
    assert [s for s in clock.sleeps if s > 0] == []  # nobody waited for the bucket
    second = asyncio.create_task(list_sessions(api, instance_id_for(0)))
    await clock.advance(0.5)
    assert not second.done()  # the session page itself is counted: the next one waits its second
    await clock.advance(0.5)
    for _ in range(100):
        if second.done():
            break
        await asyncio.sleep(0.01)
    await second


def test_the_collectors_planned_requests_stretch_the_poll_interval():
    from htap_exporter.clock import Clock
    from htap_exporter.cloud.budget import ApiBudget
    from htap_exporter.config import CollectorsConfig, NodesConfig, QueryQueueConfig, ReplicationConfig
    from htap_exporter.fleet.fleet import collector_rate

    budget = ApiBudget(10.0, Clock())
    budget.expect(f"i{n}" for n in range(270))
    assert budget.poll_interval(30.0) == 30.0  # 270 pages / 9 requests/s = 30 s
    on = CollectorsConfig(replication=ReplicationConfig(enabled=True, interval=60.0),
                          nodes=NodesConfig(enabled=True, interval=300.0),
                          query_queue=QueryQueueConfig(enabled=True, interval=600.0))
    assert collector_rate(CollectorsConfig()) == 0.0
    assert collector_rate(on) == 1 / 60 + 2 / 300 + 1 / 600  # 90 requests per instance and hour
    budget.expect_collectors(270 * collector_rate(on))
    # 9 requests/s of session pages and 6.75 of the collectors' at the configured intervals: every
    # interval is stretched by the same factor, so that together they fit the 9 planned.
    assert budget.stretch(30.0) == pytest.approx((9.0 + 270 * collector_rate(on)) / 9.0)
    assert budget.poll_interval(30.0) == pytest.approx(30.0 * 15.75 / 9.0)
