"""The fleet to poll: the listed instances, plus the discovered ones, minus other shards' share.

`effective_config` is the pure merge; `Fleet` keeps each discovering project's last known set
fresh (one refresh loop per project, jittered) and hands the merged config to `on_fleet` (the
scheduler's `apply`, wired by the CLI), whose reload semantics do the rest: new instances start
polling, vanished ones stop and their series disappear, unchanged ones keep their loop.

Who wins when an instance is found twice: a listed entry (its name, its project entry and
credentials) over a discovered one, and among listed entries the config refuses duplicates.
Discovered facts still go onto the listed instance's htap_instance_info.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, replace
from typing import Awaitable, Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from htap_exporter.clock import Clock, jittered
from htap_exporter.cloud.clients import ClientFactory
from htap_exporter.cloud.errors import ApiError
from htap_exporter.config import CollectorsConfig, Config, DiscoveryConfig, InstanceConfig, ProjectConfig
from htap_exporter.config.loader import TAURUS_INSTANCE_ID_RE
from htap_exporter.fleet.discovery import DiscoveredInstance, DiscoveryClient, DiscoveryMetrics, discover
from htap_exporter.fleet.sharding import WHOLE_FLEET, Shard

log = logging.getLogger(__name__)


def collector_rate(collectors: CollectorsConfig) -> float:
    """Requests per second per instance that the collectors beyond the session list plan to send:
    a replication list is one page for most instances, the node collector two calls (roles, then
    health), the query queue one."""
    rate = 0.0
    if collectors.replication.enabled:
        rate += 1 / collectors.replication.interval
    if collectors.nodes.enabled:
        rate += 2 / collectors.nodes.interval
    if collectors.query_queue.enabled:
        rate += 1 / collectors.query_queue.interval
    return rate


def polled_view(project: ProjectConfig) -> ProjectConfig:
    """The project as the poller sees it: discovery settings are not its business, so changing a
    filter does not restart the project's polls nor its credentials."""
    return replace(project, discovery=None)


def _client_view(project: ProjectConfig) -> ProjectConfig:
    """What discovery depends on: not the listed instances (listing one more must not re-list)."""
    return replace(polled_view(project), instances=())


def effective_config(config: Config, discovered: Mapping[str, Sequence[DiscoveredInstance]],
                     shard: Shard) -> Config:
    """`config` with each discovering project's instances added (by project_id) and every instance
    this shard does not own removed. Listed instances win over discovered ones."""
    known = {found.id: found for instances in discovered.values() for found in instances}
    taken = {instance.id for project in config.projects for instance in project.instances}
    projects = []
    for project in config.projects:
        instances = [_with_discovered(instance, known.get(instance.id)) for instance in project.instances]
        if project.discovery is not None:
            for found in discovered.get(project.project_id, ()):
                if found.id not in taken:
                    taken.add(found.id)
                    instances.append(InstanceConfig(found.id, found.name, found.facts, _taurus_id(found)))
        projects.append(replace(polled_view(project),
                                instances=tuple(i for i in instances if shard.owns(i.id))))
    return replace(config, projects=tuple(projects))


def _with_discovered(instance: InstanceConfig, found: DiscoveredInstance | None) -> InstanceConfig:
    """A listed instance with what discovery knows of it: its facts, and its TaurusDB instance
    unless the config gives one."""
    if found is None:
        return replace(instance, facts=()) if instance.facts else instance
    return replace(instance, facts=found.facts, taurus_instance_id=instance.taurus_instance_id or _taurus_id(found))


def _taurus_id(found: DiscoveredInstance) -> str | None:
    """The TaurusDB id discovery listed, when it has the form of one: it goes into a signed
    request's path (node health), so nothing else does."""
    return found.taurus_id if TAURUS_INSTANCE_ID_RE.fullmatch(found.taurus_id) else None


@dataclass
class _Refresher:
    project: ProjectConfig
    settings: DiscoveryConfig
    task: asyncio.Task[None] | None = None


class Fleet:
    def __init__(self, *, clients: ClientFactory, on_fleet: Callable[[Config], Awaitable[None]], clock: Clock,
                 registry: CollectorRegistry, shard: Shard = WHOLE_FLEET, rng: random.Random | None = None) -> None:
        self._clients = clients
        self._on_fleet = on_fleet
        self._clock = clock
        self._shard = shard
        self._rng = rng or random.Random()
        self._metrics = DiscoveryMetrics(registry)
        self._config: Config | None = None
        self._refreshers: dict[str, _Refresher] = {}
        self._discovered: dict[str, tuple[DiscoveredInstance, ...]] = {}
        self._lock = asyncio.Lock()
        self.effective: Config | None = None
        registry.register(_PollIntervalCollector(self))

    async def apply(self, config: Config) -> Config:
        """Switch to `config`: projects that start discovering are refreshed once before their
        instances are polled (so readiness waits for them); returns the effective config."""
        async with self._lock:
            self._config = config
            wanted = {p.project_id: p for p in config.projects if p.discovery is not None}
            for project_id, refresher in list(self._refreshers.items()):
                project = wanted.get(project_id)
                if project is None or (_client_view(project), project.discovery) != (
                        _client_view(refresher.project), refresher.settings):
                    await self._stop(project_id, forget=project is None)
            new = [p for project_id, p in wanted.items() if project_id not in self._refreshers]
            for project in new:
                assert project.discovery is not None
                self._refreshers[project.project_id] = _Refresher(project, project.discovery)
                self._metrics.started(project.project_id)
            await asyncio.gather(*(self._refresh(self._refreshers[p.project_id]) for p in new))
            for project in new:
                refresher = self._refreshers[project.project_id]
                refresher.task = asyncio.create_task(self._run(refresher), name=f"discovery-{project.project_id}")
            return await self._publish()

    async def _publish(self) -> Config:
        assert self._config is not None
        effective = effective_config(self._config, self._discovered, self._shard)
        for project in effective.projects:
            budget = self._clients.client(project, effective.poll).budget
            if budget is not None:
                budget.expect(instance.id for instance in project.instances)
                budget.expect_collectors(len(project.instances) * collector_rate(effective.collectors))
        await self._on_fleet(effective)
        self.effective = effective
        return effective

    async def _run(self, refresher: _Refresher) -> None:
        interval = refresher.settings.refresh_interval
        while True:
            await self._clock.sleep(jittered(interval, self._rng))
            if await self._refresh(refresher):
                async with self._lock:
                    if self._refreshers.get(refresher.project.project_id) is refresher:
                        await self._publish()

    async def _refresh(self, refresher: _Refresher) -> bool:
        """Refresh one project; True if its set changed. A failure keeps the last known set."""
        project, settings = refresher.project, refresher.settings
        assert self._config is not None
        api = self._clients.client(polled_view(project), self._config.poll)
        client = DiscoveryClient(api, project.project_id, self._config.poll.max_pages)
        fields = {"project_id": project.project_id, "region": project.region}
        try:
            result = await discover(client, settings)
        except ApiError as problem:
            self._metrics.failed(project.project_id, problem.reason)
            log.warning("discovery failed, keeping the last known instances",
                        extra={**fields, "reason": problem.reason, "error": problem.describe()})
            return False
        except Exception:  # a bug of ours must cost one refresh, not the project's discovery
            self._metrics.failed(project.project_id, "bad_response")
            log.exception("discovery failed unexpectedly, keeping the last known instances", extra=fields)
            return False
        self._metrics.succeeded(project.project_id, len(result.instances), self._clock.time())
        if api.budget is not None:
            api.budget.record_discovery(result.requests, settings.refresh_interval)
        previous = self._discovered.get(project.project_id)
        self._discovered[project.project_id] = result.instances
        if previous == result.instances:
            return False
        before = {i.id for i in previous or ()}
        after = {i.id for i in result.instances}
        log.info("discovered instances changed", extra={
            **fields, "instances": len(after), "added": len(after - before), "removed": len(before - after),
            "found": result.found, "requests": result.requests})
        return True

    async def _stop(self, project_id: str, *, forget: bool) -> None:
        refresher = self._refreshers.pop(project_id)
        if refresher.task is not None:
            refresher.task.cancel()
            await asyncio.gather(refresher.task, return_exceptions=True)
        if forget:
            self._discovered.pop(project_id, None)
            self._metrics.stopped(project_id)

    async def stop(self) -> None:
        for project_id in list(self._refreshers):
            await self._stop(project_id, forget=False)

    def poll_intervals(self) -> dict[str, float]:
        """project_id -> the poll interval its budget sustains (the longest of its entries)."""
        effective = self.effective
        if effective is None:
            return {}
        intervals: dict[str, float] = {}
        for project in effective.projects:
            interval = self._clients.client(project, effective.poll).poll_interval(effective.poll.interval)
            intervals[project.project_id] = max(interval, intervals.get(project.project_id, 0.0))
        return intervals


class _PollIntervalCollector(Collector):
    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "htap_poll_effective_interval_seconds",
            "Poll interval of the project's instances: poll.interval, or longer when the project's"
            " api_rate_limit cannot sustain it for the whole fleet.", labels=["project_id"])
        for project_id, interval in sorted(self._fleet.poll_intervals().items()):
            family.add_metric([project_id], interval)
        yield family
