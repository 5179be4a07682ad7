"""The fleet to poll: merging listed and discovered instances, sharding, and discovery's refresh
loop feeding the poller (a recording stand-in here; the real one in tests/e2e/test_fleet.py)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from htap_exporter.cloud.client import ProjectClient
from htap_exporter.cloud.auth import StaticTokenAuthenticator
from htap_exporter.cloud.budget import ApiBudget
from htap_exporter.config import (Config, DiscoveryConfig, InstanceConfig, PollConfig, ProjectConfig, Secret,
                             SecretSource, TokenAuth)
from htap_exporter.fleet.discovery import DiscoveredInstance
from htap_exporter.fleet.fleet import Fleet, effective_config
from htap_exporter.redact import Redactor
from htap_exporter.fleet.sharding import Shard, shard_of
from htap_exporter.simulator import SIM_TOKEN, Fault, instance_id_for
from htap_exporter.cloud.transport import Transport
from tests.fakes import FakeClock, MidpointRandom, RunningSimulator

PID_A = "a" * 32
PID_B = "b" * 32
AUTH = TokenAuth(token=SecretSource(value=Secret("tok-12345678")))


def project(project_id: str, instances: tuple[InstanceConfig, ...] = (), discovery: bool = False,
            endpoint: str = "https://gaussdb.cn-north-4.myhuaweicloud.com", rate: float = 0.0) -> ProjectConfig:
    return ProjectConfig(project_id=project_id, region="cn-north-4", endpoint=endpoint,
                         iam_endpoint="https://iam.cn-north-4.myhuaweicloud.com", auth=AUTH, instances=instances,
                         api_rate_limit=rate,
                         discovery=DiscoveryConfig(enabled=True, refresh_interval=60.0) if discovery else None)


def found(index: int, name: str | None = None, status: str = "normal") -> DiscoveredInstance:
    return DiscoveredInstance(instance_id_for(index), name or f"found-{index}", status, False, "3.1.6", "3", "t")


def ids(config: Config) -> dict[str, list[tuple[str, str]]]:
    return {p.project_id: [(i.id, i.name) for i in p.instances] for p in config.projects}


def test_merge_listed_wins_and_gets_the_discovered_facts():
    listed = InstanceConfig(instance_id_for(0), "orders")
    config = Config(file="f", projects=(project(PID_A, (listed,)), project(PID_B, discovery=True)))
    effective = effective_config(config, {PID_B: (found(0), found(1))}, Shard(0, 1))
    # Found by B's discovery but listed under A: polled once, through A, with the listed name.
    assert ids(effective) == {PID_A: [(instance_id_for(0), "orders")], PID_B: [(instance_id_for(1), "found-1")]}
    assert effective.projects[0].instances[0].facts == found(0).facts
    assert all(p.discovery is None for p in effective.projects)


def test_merge_ignores_discovered_sets_of_projects_not_discovering():
    config = Config(file="f", projects=(project(PID_A),))
    assert ids(effective_config(config, {PID_A: (found(1),)}, Shard(0, 1))) == {PID_A: []}


def test_merge_keeps_only_this_shards_instances_listed_or_discovered():
    listed = tuple(InstanceConfig(instance_id_for(n), f"l{n}") for n in range(20))
    config = Config(file="f", projects=(project(PID_A, listed), project(PID_B, discovery=True)))
    discovered = {PID_B: tuple(found(n) for n in range(20, 60))}
    seen: list[str] = []
    for index in range(3):
        effective = effective_config(config, discovered, Shard(index, 3))
        mine = [i.id for p in effective.projects for i in p.instances]
        assert all(shard_of(i, 3) == index for i in mine)
        seen += mine
    assert sorted(seen) == sorted(instance_id_for(n) for n in range(60))


class RecordingPoller:
    """Stands in for the client factory and the scheduler: one real API client per project (to the simulator), applies recorded."""

    def __init__(self, transport: Transport, clock: FakeClock) -> None:
        self.transport = transport
        self.clock = clock
        self.apis: dict[ProjectConfig, ProjectClient] = {}
        self.applied: list[Config] = []
        self.changed = asyncio.Event()

    def client(self, project: ProjectConfig, poll: PollConfig) -> ProjectClient:
        key = replace(project, instances=())
        if key not in self.apis:
            auth = StaticTokenAuthenticator(key.auth, self.clock, Redactor())  # type: ignore[arg-type]
            budget = ApiBudget(key.api_rate_limit, self.clock) if key.api_rate_limit > 0 else None
            self.apis[key] = ProjectClient(endpoint=key.endpoint, project_id=key.project_id, auth=auth,
                                     transport=self.transport, max_pages=poll.max_pages, limiter=budget)
        return self.apis[key]

    async def apply(self, config: Config) -> None:
        self.applied.append(config)
        self.changed.set()

    async def next_apply(self, timeout: float = 10.0) -> Config:
        await asyncio.wait_for(self.changed.wait(), timeout)
        self.changed.clear()
        return self.applied[-1]


@pytest.fixture
def poller(http, clock) -> RecordingPoller:
    return RecordingPoller(Transport(http, asyncio.Semaphore(4), 5.0, 8 * 1024 * 1024), clock)


def sim_config(simulator: RunningSimulator, *, rate: float = 0.0) -> Config:
    sim_project = replace(project(simulator.sim.project_id, discovery=True, endpoint=simulator.base_url, rate=rate),
                          auth=TokenAuth(token=SecretSource(value=Secret(SIM_TOKEN))))
    return Config(file="f", poll=PollConfig(interval=10.0, timeout=5.0), projects=(sim_project,))


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def settle_refresh(clock: FakeClock, poller: RecordingPoller) -> Config | None:
    """Advance past one refresh interval (60 s +- 10 %) and wait for the refresh's HTTP to finish."""
    before = len(poller.applied)
    asleep = clock.pending  # the refresh loop, parked until its next refresh
    await clock.advance(66.0)
    # The refresh talks real HTTP to the simulator; it has ended when its loop sleeps again.
    await asyncio.wait_for(clock.wait_for_sleepers(asleep), 10)
    return poller.applied[-1] if len(poller.applied) > before else None


async def test_refresh_follows_creations_and_deletions(simulator: RunningSimulator, poller, clock):
    registry = CollectorRegistry()
    fleet = Fleet(clients=poller, on_fleet=poller.apply, clock=clock, registry=registry, rng=MidpointRandom())
    sim = simulator.sim
    pid = sim.project_id
    effective = await fleet.apply(sim_config(simulator))
    assert [i.name for i in effective.projects[0].instances] == ["htap-1", "htap-2", "htap-3"]
    assert poller.applied == [effective]
    assert sample(registry, "htap_discovered_instances", project_id=pid) == 3
    assert sample(registry, "htap_discovery_last_success_timestamp_seconds", project_id=pid) == clock.time()
    assert sample(registry, "htap_discovery_errors_total", project_id=pid, reason="http") == 0

    created = sim.create_instance("newcomer")
    changed = await settle_refresh(clock, poller)
    assert changed is not None and created.id in {i.id for i in changed.projects[0].instances}

    sim.delete_instance(instance_id_for(0))
    changed = await settle_refresh(clock, poller)
    assert changed is not None
    assert [i.name for i in changed.projects[0].instances] == ["htap-2", "htap-3", "newcomer"]
    assert sample(registry, "htap_discovered_instances", project_id=pid) == 3

    assert await settle_refresh(clock, poller) is None  # nothing changed: no apply, loops untouched
    await fleet.stop()


async def test_a_failed_refresh_keeps_the_last_known_set_and_counts(simulator: RunningSimulator, poller, clock):
    registry = CollectorRegistry()
    fleet = Fleet(clients=poller, on_fleet=poller.apply, clock=clock, registry=registry, rng=MidpointRandom())
    pid = simulator.sim.project_id
    await fleet.apply(sim_config(simulator))
    succeeded_at = sample(registry, "htap_discovery_last_success_timestamp_seconds", project_id=pid)
    simulator.sim.faults["list_instances"] = Fault(kind="status")
    simulator.sim.delete_instance(instance_id_for(0))  # unseen while listing fails
    assert await settle_refresh(clock, poller) is None
    assert sample(registry, "htap_discovery_errors_total", project_id=pid, reason="http") == 1
    assert sample(registry, "htap_discovery_last_success_timestamp_seconds", project_id=pid) == succeeded_at
    assert len(fleet.effective.projects[0].instances) == 3  # type: ignore[union-attr]
    del simulator.sim.faults["list_instances"]
    changed = await settle_refresh(clock, poller)
    assert changed is not None and len(changed.projects[0].instances) == 2
    await fleet.stop()


async def test_a_failed_first_refresh_starts_with_the_listed_instances_only(simulator: RunningSimulator, poller, clock):
    simulator.sim.faults["list_instances"] = Fault(kind="status")
    fleet = Fleet(clients=poller, on_fleet=poller.apply, clock=clock, registry=CollectorRegistry(), rng=MidpointRandom())
    effective = await fleet.apply(sim_config(simulator))
    assert effective.projects[0].instances == ()
    del simulator.sim.faults["list_instances"]
    changed = await settle_refresh(clock, poller)
    assert changed is not None and len(changed.projects[0].instances) == 3
    await fleet.stop()


async def test_reload_without_discovery_stops_it_and_drops_its_series(simulator: RunningSimulator, poller, clock):
    registry = CollectorRegistry()
    fleet = Fleet(clients=poller, on_fleet=poller.apply, clock=clock, registry=registry, rng=MidpointRandom())
    config = sim_config(simulator)
    await fleet.apply(config)
    listed = InstanceConfig(instance_id_for(1), "kept")
    effective = await fleet.apply(replace(config, projects=(replace(config.projects[0], discovery=None,
                                                                    instances=(listed,)),)))
    assert ids(effective) == {simulator.sim.project_id: [(instance_id_for(1), "kept")]}
    assert sample(registry, "htap_discovered_instances", project_id=simulator.sim.project_id) is None
    assert sample(registry, "htap_discovery_errors_total", project_id=simulator.sim.project_id, reason="http") is None
    simulator.sim.create_instance("unseen")
    assert await settle_refresh(clock, poller) is None  # no refresh loop left
    await fleet.stop()


async def test_changing_a_filter_refreshes_at_once(simulator: RunningSimulator, poller, clock):
    fleet = Fleet(clients=poller, on_fleet=poller.apply, clock=clock, registry=CollectorRegistry(), rng=MidpointRandom())
    config = sim_config(simulator)
    await fleet.apply(config)
    narrowed = replace(config.projects[0], discovery=replace(config.projects[0].discovery, include="htap-2"))
    effective = await fleet.apply(replace(config, projects=(narrowed,)))
    assert [i.name for i in effective.projects[0].instances] == ["htap-2"]
    await fleet.stop()


async def test_budget_knows_the_fleet_and_the_gauge_shows_the_stretched_interval(
        simulator: RunningSimulator, poller, clock):
    sim = simulator.sim
    for n in range(57):
        sim.create_instance(f"bulk-{n}")
    registry = CollectorRegistry()
    fleet = Fleet(clients=poller, on_fleet=poller.apply, clock=clock, registry=registry, rng=random.Random(1))
    config = sim_config(simulator, rate=2.0)
    applying = asyncio.create_task(fleet.apply(config))
    while not applying.done():  # discovery waits for the bucket in virtual time, HTTP in real time
        await clock.advance(0.5)
        await asyncio.sleep(0.001)
    await applying
    # 60 instances at 10 s need 6 requests/s; the budget gives polls 90 % of 2/s minus discovery's
    # share (1 + 59 requests per 60 s refresh = 1/s): 60 / (1.8 - 1.0) = 75 s.
    interval = sample(registry, "htap_poll_effective_interval_seconds", project_id=sim.project_id)
    assert interval == pytest.approx(60 / (1.8 - 1.0))
    await fleet.stop()


async def test_one_projects_failing_discovery_is_its_own(simulator: RunningSimulator, poller, clock):
    from htap_exporter.simulator import Simulator, start

    other = Simulator(project_id="fedcba9876543210fedcba9876543210", instances=2, first_index=100)
    other_runner, other_url = await start(other)
    try:
        registry = CollectorRegistry()
        fleet = Fleet(clients=poller, on_fleet=poller.apply, clock=clock, registry=registry, rng=MidpointRandom())
        first = sim_config(simulator).projects[0]
        second = replace(first, project_id=other.project_id, endpoint=other_url)
        effective = await fleet.apply(Config(file="f", poll=PollConfig(interval=10.0, timeout=5.0),
                                             projects=(first, second)))
        assert [len(p.instances) for p in effective.projects] == [3, 2]
        simulator.sim.faults["list_instances"] = Fault(kind="status")
        other.create_instance("newcomer")
        changed = await settle_refresh(clock, poller)
        # The failing project keeps its set; the other one follows its change.
        assert changed is not None and [len(p.instances) for p in changed.projects] == [3, 3]
        assert sample(registry, "htap_discovery_errors_total", project_id=simulator.sim.project_id, reason="http") == 1
        assert sample(registry, "htap_discovery_errors_total", project_id=other.project_id, reason="http") == 0
        assert sample(registry, "htap_discovered_instances", project_id=other.project_id) == 3
        await fleet.stop()
    finally:
        await other_runner.cleanup()


async def test_listing_one_more_instance_does_not_restart_discovery(simulator: RunningSimulator, poller, clock):
    fleet = Fleet(clients=poller, on_fleet=poller.apply, clock=clock, registry=CollectorRegistry(), rng=MidpointRandom())
    config = sim_config(simulator)
    await fleet.apply(config)
    requests = dict(simulator.sim.observed.discovery_requests)
    listed = replace(config.projects[0], instances=(InstanceConfig(instance_id_for(0), "named"),))
    effective = await fleet.apply(replace(config, projects=(listed,)))
    assert simulator.sim.observed.discovery_requests == requests  # no new refresh
    assert [i.name for i in effective.projects[0].instances] == ["named", "htap-2", "htap-3"]
    await fleet.stop()


def test_a_discovered_taurus_id_reaches_the_instance_only_in_the_form_of_one():
    from htap_exporter.fleet.discovery import DiscoveredInstance
    from htap_exporter.fleet.fleet import effective_config
    from htap_exporter.config import DiscoveryConfig

    good, odd = "a" * 32 + "in07", "../../x"
    project = ProjectConfig(project_id="p" * 32, region="cn-north-4", endpoint="https://e", iam_endpoint="https://i",
                            auth=TokenAuth(token=SecretSource(value=Secret("t" * 20))), instances=(),
                            discovery=DiscoveryConfig())
    found = {project.project_id: (
        DiscoveredInstance("b" * 32 + "in17", "one", "normal", False, "3.1", "3", good),
        DiscoveredInstance("c" * 32 + "in17", "two", "normal", False, "3.1", "3", odd))}
    config = Config(file="c.yaml", projects=(project,))
    instances = {i.name: i.taurus_instance_id for i in effective_config(config, found, Shard(0, 1)).projects[0].instances}
    assert instances == {"one": good, "two": None}
