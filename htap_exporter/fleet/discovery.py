"""Discovery: which HTAP instances a project has, through the cloud's two-step list API.

1. `GET /v3/{project_id}/instances?offset=&limit=` lists the TaurusDB instances (paginated, with a
   total count);
2. `GET /v3/{project_id}/instances/{taurus_id}/htap` lists each one's HTAP instances, of which the
   standard HTAP ones (ids ending in `in17`) are kept.
The result is a plain set of instances with the facts worth exporting; what to do with it (merge
with the listed instances, shard, poll) is decided elsewhere. Nothing here schedules or polls.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from htap_exporter.cloud.client import ProjectClient
from htap_exporter.cloud.errors import REASONS, ApiError
from htap_exporter.cloud.paging import PAGE_LIMIT, PageStep, walk_pages
from htap_exporter.config import INSTANCE_ID_RE, DiscoveryConfig

LIST_INSTANCES_API = "list_instances"
LIST_HTAP_API = "list_htap_instances"
# The answer for an instance that no longer exists: a TaurusDB instance deleted between the two
# steps is skipped, not a failed refresh. A gateway 404 (APIGW.0101: no such API) is not that.
NOT_FOUND_CODES = frozenset({"DBS.200022"})
NO_SUCH_API_CODES = frozenset({"APIG.0101", "APIGW.0101"})
# Step 2 costs one request per TaurusDB instance; a few at a time leave the request slots to polls.
STEP2_CONCURRENCY = 4
MAX_FACT_LENGTH = 128
UNKNOWN = "unknown"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiscoveredInstance:
    id: str
    name: str
    status: str
    frozen: bool
    engine_version: str
    node_count: str
    taurus_id: str  # the TaurusDB instance it belongs to

    @property
    def facts(self) -> tuple[tuple[str, str], ...]:
        """Extra labels of htap_instance_info."""
        return (("engine_version", self.engine_version), ("node_count", self.node_count), ("status", self.status))


@dataclass(frozen=True)
class Discovery:
    """One refresh: the instances kept after the filters, how many were found, what it cost."""

    instances: tuple[DiscoveredInstance, ...]
    found: int
    requests: int


def _text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return UNKNOWN
    text = str(value).strip()
    return text[:MAX_FACT_LENGTH] if text else UNKNOWN


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if isinstance(value, (bool, int)) else False


def parse_htap_instance(item: Any, taurus_id: str) -> DiscoveredInstance | None:
    """One item of step 2, or None when it is not a standard HTAP instance (or not an object)."""
    if not isinstance(item, dict):
        return None
    instance_id = item.get("id")
    if not isinstance(instance_id, str) or not INSTANCE_ID_RE.fullmatch(instance_id):
        return None
    state = item.get("instance_state")
    status = state.get("instance_status") if isinstance(state, dict) else item.get("status")
    name = _text(item.get("name"))
    node_count = item.get("node_num")
    return DiscoveredInstance(
        id=instance_id,
        name=instance_id if name == UNKNOWN else name,
        status=_text(status),
        frozen=_flag(item.get("is_frozen")),
        engine_version=_text(item.get("engine_version")),
        node_count=str(node_count) if isinstance(node_count, int) and not isinstance(node_count, bool)
        else (node_count.strip() if isinstance(node_count, str) and node_count.strip().isdigit() else UNKNOWN),
        taurus_id=taurus_id,
    )


def kept(instance: DiscoveredInstance, settings: DiscoveryConfig) -> bool:
    """Whether the filters keep `instance` (the statuses compare case-insensitively)."""
    if settings.skip_frozen and instance.frozen:
        return False
    if instance.status.lower() in settings.skip_statuses:
        return False
    return settings.wants(instance.name)


class DiscoveryClient:
    """The two list calls of one project, through the project's API client: its credentials,
    its auth gate and its request budget, shared with polling."""

    def __init__(self, api: ProjectClient, project_id: str, max_pages: int) -> None:
        self._api = api
        self._project_id = project_id
        self._max_pages = max_pages
        self.requests = 0

    async def _get(self, api: str, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        request = self._api.request(path, params)
        self.requests += 1
        response = await self._api.call(request, api)
        document = response.json()
        if not isinstance(document, dict):
            raise ApiError("bad_response", f"{api}: response is not a JSON object", status=response.status)
        return document

    async def taurus_instances(self) -> list[tuple[str, str]]:
        """(id, status) of every TaurusDB instance, page by page."""
        found: dict[str, str] = {}

        async def read_page(offset: int) -> PageStep:
            document = await self._get(LIST_INSTANCES_API, f"/v3/{self._project_id}/instances",
                                       [("limit", str(PAGE_LIMIT)), ("offset", str(offset))])
            items = document.get("instances")
            if not isinstance(items, list):
                raise ApiError("bad_response", f"{LIST_INSTANCES_API}: response has no instances list")
            new = 0
            if len(items) <= PAGE_LIMIT:  # a longer page fails the walk, whatever it holds
                for item in items:
                    if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"] not in found:
                        found[item["id"]] = _text(item.get("status"))
                        new += 1
            total = document.get("total_count")
            return PageStep(len(items), new, total if isinstance(total, int) and not isinstance(total, bool) else None)

        await walk_pages(read_page, max_pages=self._max_pages, what=LIST_INSTANCES_API, items="instances")
        return list(found.items())

    async def htap_instances(self, taurus_id: str) -> list[DiscoveredInstance] | None:
        """The standard HTAP instances of one TaurusDB instance; None if it no longer exists."""
        try:
            document = await self._get(LIST_HTAP_API, f"/v3/{self._project_id}/instances/{taurus_id}/htap", [])
        except ApiError as problem:
            if problem.error_code in NOT_FOUND_CODES or (
                    problem.status == 404 and problem.error_code not in NO_SUCH_API_CODES):
                log.debug("TaurusDB instance gone during discovery",
                          extra={"project_id": self._project_id, "taurus_id": taurus_id})
                return None
            raise
        items = document.get("instances")
        if not isinstance(items, list):
            raise ApiError("bad_response", f"{LIST_HTAP_API}: response has no instances list")
        parsed = (parse_htap_instance(item, taurus_id) for item in items)
        return [instance for instance in parsed if instance is not None]


async def discover(client: DiscoveryClient, settings: DiscoveryConfig) -> Discovery:
    """One refresh of a project; any failure (ApiError) fails it whole, so the caller keeps the
    last known set instead of dropping the instances it could not see this time."""
    taurus = [(taurus_id, status) for taurus_id, status in await client.taurus_instances()
              # A TaurusDB instance being created or deleted has no HTAP instance to poll.
              if status.lower() not in settings.skip_statuses]
    slots = asyncio.Semaphore(STEP2_CONCURRENCY)

    async def children(taurus_id: str) -> list[DiscoveredInstance] | None:
        async with slots:
            return await client.htap_instances(taurus_id)

    try:
        async with asyncio.TaskGroup() as group:  # the first failure cancels the rest
            tasks = [group.create_task(children(taurus_id)) for taurus_id, _ in taurus]
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
    found: dict[str, DiscoveredInstance] = {}
    for task in tasks:
        for instance in task.result() or []:
            found.setdefault(instance.id, instance)
    instances = tuple(instance for instance in found.values() if kept(instance, settings))
    return Discovery(instances=instances, found=len(found), requests=client.requests)


class DiscoveryMetrics:
    """htap_discovered_instances, htap_discovery_last_success_timestamp_seconds and
    htap_discovery_errors_total, per project, in the exporter's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.instances = Gauge("htap_discovered_instances", "HTAP instances found by the last successful"
                               " discovery, after the filters.", ["project_id"], registry=registry)
        self.last_success = Gauge("htap_discovery_last_success_timestamp_seconds",
                                  "Unix time of the last successful discovery.", ["project_id"], registry=registry)
        self.errors = Counter("htap_discovery_errors", "Failed discovery refreshes by reason.",
                              ["project_id", "reason"], registry=registry)

    def started(self, project_id: str) -> None:
        for reason in REASONS:  # at 0 from the start, so rate() and alerts work before the first error
            self.errors.labels(project_id, reason)

    def succeeded(self, project_id: str, instances: int, when: float) -> None:
        self.instances.labels(project_id).set(instances)
        self.last_success.labels(project_id).set(when)

    def failed(self, project_id: str, reason: str) -> None:
        self.errors.labels(project_id, reason).inc()

    def stopped(self, project_id: str) -> None:
        for metric in (self.instances, self.last_success):
            try:
                metric.remove(project_id)
            except KeyError:
                pass
        for reason in REASONS:
            try:
                self.errors.remove(project_id, reason)
            except KeyError:
                pass
