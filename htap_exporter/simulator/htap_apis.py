"""The fake cloud's HTAP sibling APIs: response documents of one simulated instance. Pure (no HTTP).

The documents follow the SDK's models (`huaweicloudsdkgaussdb` v3, the test oracle), field names
and types included:
- ListStarRocksDataReplications: `{"total_count": str, "replications": [...], "ext_text": str}`,
  every row field a string, pages capped at 50 rows whatever the `limit` (the spec's maxItems);
- ListInstanceNode: `{"node_list": [{"node_id", "node_name", "role"}]}`, no status;
- ListStarrocksInstanceInfo: `{"instances": [{..., "is_frozen": int, "groups": [{"nodes": [...]}]}]}`
  with each node's `status`;
- ShowHtapQueryQueuesRule: `{"query_queue_rule": {...}}`, the switch a "true"/"false" string.
Data moves with time (`now`, seconds since the epoch), deterministically per seed: a task in full
sync progressing then incremental, one incremental with a catch-up now and then, one abnormal
now and then; a leader, followers and BEs, one BE abnormal now and then; a queue rule. The values
keep the API's quirks the exporter must read: stages in either case, percentages with and
without `%`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

# The server's page cap for the replication list: below the documented maximum `limit` of 100.
REPLICATION_PAGE_CAP = 50
MAX_LIMIT = 100

FULL_SYNC_PERIOD = 3600.0  # task 0: 40 minutes of full sync, then 20 incremental
FULL_SYNC_SECONDS = 2400.0
CATCHUP_PERIOD = 900.0  # task 1: a 5-minute catch-up every 15 minutes
CATCHUP_SECONDS = 300.0
ABNORMAL_TASK_PERIOD = 3600.0  # task 2: abnormal 10 minutes an hour
ABNORMAL_TASK_SECONDS = 600.0
ABNORMAL_NODE_PERIOD = 1800.0  # the last BE: abnormal 5 minutes every half hour
ABNORMAL_NODE_SECONDS = 300.0

TASKS = (("orders_full_sync", "orders", "orders_sr"), ("sales_sync", "sales", "sales_sr"),
         ("events_sync", "events", "events_sr"))


def _hex(text: str, length: int = 32) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _phase(now: float, period: float, seed: int, salt: str) -> float:
    """Seconds into the current period, shifted per seed so instances do not move in step."""
    shift = int(_hex(f"{seed}-{salt}", 8), 16) % int(period)
    return (now + shift) % period


def _percent(value: float) -> str:
    return f"{min(max(value, 0.0), 100.0):.1f}"  # "12.5": 3 to 5 characters, as the spec allows


def page_window(limit: str | None, offset: str | None) -> tuple[int, int]:
    """The replication list's query: `limit` 1..100 (default 100), `offset` >= 0 (default 0), both
    sent as strings. Raises ValueError with the message for a 400."""
    try:
        size = MAX_LIMIT if limit is None else int(limit)
        start = 0 if offset is None else int(offset)
    except ValueError:
        raise ValueError("limit and offset must be integers") from None
    if not 1 <= size <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    if start < 0:
        raise ValueError("offset must not be negative")
    return start, size


@dataclass
class SimReplication:
    """The sync tasks of one instance: the three of TASKS, then `extra` steady ones."""
    seed: int = 0
    extra: int = 0

    @property
    def count(self) -> int:
        return len(TASKS) + self.extra

    def rows(self, now: float) -> list[dict[str, str]]:
        rows = []
        for index, (name, source, target) in enumerate(TASKS):
            row = {"source_database": source, "target_database": target, "task_name": name, "status": "Yes",
                   "stage": "incremental", "percentage": "100%", "catchup_stage": "incremental",
                   "catchup_percentage": "100"}
            if index == 0:
                phase = _phase(now, FULL_SYNC_PERIOD, self.seed, name)
                if phase < FULL_SYNC_SECONDS:
                    row.update(stage="full", percentage=_percent(100 * phase / FULL_SYNC_SECONDS),
                               catchup_stage="wait", catchup_percentage="0%")
            elif index == 1:
                phase = _phase(now, CATCHUP_PERIOD, self.seed, name)
                if phase < CATCHUP_SECONDS:
                    # Capitalised, as the Terraform provider's docs show stages.
                    row.update(catchup_stage="Full", catchup_percentage=f"{int(100 * phase / CATCHUP_SECONDS)}%")
            elif _phase(now, ABNORMAL_TASK_PERIOD, self.seed, name) < ABNORMAL_TASK_SECONDS:
                row.update(status="No")
            rows.append(row)
        for index in range(self.extra):
            rows.append({"source_database": f"db_{index:03d}", "target_database": f"db_{index:03d}_sr",
                         "task_name": f"table_sync_{index:03d}", "status": "Yes", "stage": "incremental",
                         "percentage": "100", "catchup_stage": "incremental", "catchup_percentage": "100"})
        return rows

    def page(self, now: float, offset: int = 0, limit: int = MAX_LIMIT) -> dict[str, Any]:
        rows = self.rows(now)
        return {"total_count": str(len(rows)),
                "replications": rows[offset:offset + min(limit, REPLICATION_PAGE_CAP)],
                "ext_text": ""}


@dataclass
class SimNodes:
    """The StarRocks nodes of one instance: FE 0 leads, the other FEs follow, then the observers and BEs."""
    instance_id: str
    name: str
    seed: int = 0
    frontends: int = 3
    observers: int = 0
    backends: int = 3

    def nodes(self) -> list[tuple[str, str, str]]:
        """(node id, node name, role)."""
        out = []
        for index in range(self.frontends):
            out.append((f"fe{index}", "fe-leader" if index == 0 else "fe-follower"))
        out.extend((f"ob{index}", "fe-observer") for index in range(self.observers))
        out.extend((f"be{index}", "be") for index in range(self.backends))
        return [(_hex(f"{self.instance_id}-{key}") + "no17", f"{self.name}-{key}", role) for key, role in out]

    def node_list(self) -> dict[str, Any]:
        return {"node_list": [{"node_id": node_id, "node_name": name, "role": role}
                              for node_id, name, role in self.nodes()]}

    def status(self, now: float, node_id: str) -> str:
        backends = [node for node in self.nodes() if node[2] == "be"]
        if backends and node_id == backends[-1][0] and \
                _phase(now, ABNORMAL_NODE_PERIOD, self.seed, "node") < ABNORMAL_NODE_SECONDS:
            return "abnormal"
        return "normal"

    def instance_info(self, now: float, *, project_id: str) -> dict[str, Any]:
        groups: dict[str, list[dict[str, Any]]] = {"fe": [], "be": []}
        for node_id, name, role in self.nodes():
            kind = "be" if role == "be" else "fe"
            groups[kind].append({
                "id": node_id, "name": name, "type": kind, "status": self.status(now, node_id),
                "volume": {"type": "ULTRAHIGH", "size": "100" if kind == "fe" else "500"},
                "cpu": "4" if kind == "fe" else "16", "mem": "16" if kind == "fe" else "64",
                "datastore": {"id": "", "type": "starrocks", "version": "3.1.14"},
                "actions": [], "priority": 1, "frozen_flag": 0, "db_port": 9030 if kind == "fe" else 9060,
                "pay_model": "0", "az_code": "cn-north-4a", "need_restart": False,
            })
        abnormal = any(node["status"] != "normal" for nodes in groups.values() for node in nodes)
        return {"instances": [{
            "id": self.instance_id, "name": self.name, "project_id": project_id,
            "status": "abnormal" if abnormal else "normal", "is_frozen": 0, "cluster_mode": "Cluster",
            "data_store_version": "3.1.14", "data_store_type": "starrocks", "db_port": "9030",
            "actions": [], "users_sync_switch_on": False, "support_data_replication": True,
            "new_version_available": False, "fe_node_volume_size": "100", "be_node_volume_size": "500",
            "groups": [{"id": _hex(f"{self.instance_id}-{kind}-group"), "name": f"{kind}-group",
                        "group_type_name": kind, "group_node_type": kind, "nodes": nodes}
                       for kind, nodes in groups.items() if nodes],
        }]}


@dataclass
class SimQueryQueue:
    """The query-queue rule of one instance: on, with limits that differ per seed."""
    seed: int = 0

    def rule(self) -> dict[str, Any]:
        return {"query_queue_rule": {
            "query_queue_max_queued_queries": 1024,
            "query_queue_pending_timeout_second": 300,
            "query_queue_concurrency_limit": 10 + self.seed % 3 * 10,
            "query_queue_mem_used_pct_limit": 80,
            "query_queue_cpu_used_pct_limit": 0,  # 0: no CPU limit
            "enable_query_queue_select": "false" if self.seed % 4 == 3 else "true",
        }}


@dataclass
class SimHtapApis:
    """The four documents of one simulated HTAP instance."""
    instance_id: str
    name: str
    seed: int = 0
    extra_tasks: int = 0

    def __post_init__(self) -> None:
        self.replication = SimReplication(seed=self.seed, extra=self.extra_tasks)
        self.nodes = SimNodes(self.instance_id, self.name, seed=self.seed)
        self.query_queue = SimQueryQueue(seed=self.seed)

    def list_replications(self, now: float, offset: int = 0, limit: int = MAX_LIMIT) -> dict[str, Any]:
        return self.replication.page(now, offset, limit)

    def list_nodes(self) -> dict[str, Any]:
        return self.nodes.node_list()

    def show_starrocks_instance(self, now: float, *, project_id: str) -> dict[str, Any]:
        return self.nodes.instance_info(now, project_id=project_id)

    def show_query_queue_rule(self) -> dict[str, Any]:
        return self.query_queue.rule()
