"""StarRocks nodes of one instance: roles and health. Pure.

Two documents (spec: htap-sibling-apis.md sections 2 and 3):
- ListInstanceNode `{"node_list": [{"node_id", "node_name", "role"}]}`: the roles, no status;
- ListStarrocksInstanceInfo `{"instances": [{"groups": [{"nodes": [{"id", "name", "status"}]}]}]}`:
  the status of each node. Its path needs the TaurusDB instance id, so it may be missing: then
  `samples` gets `statuses=None` and exports roles only.
Nodes of the two are matched by node id. A row without a usable id is counted and skipped; an
unknown role or status is read as `unknown`; a document of the wrong shape raises
ApiError("bad_response").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from htap_exporter.cloud.client import ProjectClient
from htap_exporter.collectors.base import (CollectorOutput, Samples, declare, get_json, json_list, json_object, render)
from htap_exporter.collectors.labels import DEFAULT_MAX_LABEL_LENGTH, UNKNOWN, label_value
from htap_exporter.exposition.families import Family
from htap_exporter.exposition.writer import InstanceIdentity

LIST_NODES_API = "list_nodes"
SHOW_INSTANCE_API = "show_starrocks_instance"

log = logging.getLogger(__name__)

ROLES = ("fe-leader", "fe-follower", "fe-observer", "be")
STATUSES = ("normal", "abnormal", "creating", "createfail")

FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("htap_nodes", "gauge", "StarRocks nodes per role (fe-leader, fe-follower, fe-observer, be)."),
    ("htap_node_info", "gauge", "A StarRocks node and its role (always 1)."),
    ("htap_node_status", "gauge",
     "1 for the node's current status, 0 for the others; only where the TaurusDB instance id is known."),
)


@dataclass(frozen=True)
class Node:
    id: str
    name: str  # "" when missing
    role: str  # one of ROLES or "unknown"


@dataclass(frozen=True)
class NodeList:
    nodes: tuple[Node, ...]  # each id once, in the order served
    bad_rows: int
    bad_values: int  # unknown roles


@dataclass(frozen=True)
class NodeStatus:
    id: str
    name: str
    status: str  # one of STATUSES or "unknown"


@dataclass(frozen=True)
class NodeStatuses:
    nodes: tuple[NodeStatus, ...]
    bad_rows: int
    bad_values: int  # unknown statuses


def _node_id(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def parse_role(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    role = value.strip().lower()
    return role if role in ROLES else None


def parse_status(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    status = value.strip().lower()
    return status if status in STATUSES else None


def parse_node_list(document: Any) -> NodeList:
    """ListInstanceNode."""
    rows = json_list(json_object(document, "node list"), "node_list", "node list")
    nodes: dict[str, Node] = {}
    bad_rows = bad_values = 0
    for row in rows:
        node_id = _node_id(row.get("node_id")) if isinstance(row, dict) else None
        if node_id is None or node_id in nodes:
            bad_rows += 1
            continue
        role = parse_role(row.get("role"))
        if role is None:
            bad_values += 1
        nodes[node_id] = Node(id=node_id, name=_text(row.get("node_name")), role=role or UNKNOWN)
    return NodeList(nodes=tuple(nodes.values()), bad_rows=bad_rows, bad_values=bad_values)


def parse_instance_info(document: Any, instance_id: str | None = None) -> NodeStatuses:
    """ListStarrocksInstanceInfo: the status of every node of every group. With several instances
    in the list, the one whose `id` is `instance_id` (else the first)."""
    instances = json_list(json_object(document, "instance info"), "instances", "instance info", required=True)
    candidates = [item for item in instances if isinstance(item, dict)]
    if not candidates:
        return NodeStatuses(nodes=(), bad_rows=len(instances), bad_values=0)
    chosen = next((item for item in candidates if instance_id is not None and item.get("id") == instance_id),
                  candidates[0])
    groups = json_list(chosen, "groups", "instance info")
    nodes: dict[str, NodeStatus] = {}
    bad_rows = bad_values = 0
    for group in groups:
        rows = group.get("nodes") if isinstance(group, dict) else None
        if not isinstance(rows, list):
            bad_rows += 1
            continue
        for row in rows:
            node_id = _node_id(row.get("id")) if isinstance(row, dict) else None
            if node_id is None or node_id in nodes:
                bad_rows += 1
                continue
            status = parse_status(row.get("status"))
            if status is None:
                bad_values += 1
            nodes[node_id] = NodeStatus(id=node_id, name=_text(row.get("name")), status=status or UNKNOWN)
    return NodeStatuses(nodes=tuple(nodes.values()), bad_rows=bad_rows, bad_values=bad_values)


def samples(node_list: NodeList, statuses: NodeStatuses | None, *,
            max_label_length: int = DEFAULT_MAX_LABEL_LENGTH) -> Samples:
    """Family name -> (extra labels, value). Every node of the role list gets a status series
    (`unknown` when the health document does not list it); a node only in the health document
    gets one too, under the name it has there."""
    counts = dict.fromkeys(ROLES, 0)
    for node in node_list.nodes:
        counts[node.role] = counts.get(node.role, 0) + 1
    out: Samples = {name: [] for name, _, _ in FAMILIES}
    # The four roles always; `unknown` only when a node has a role outside them.
    out["htap_nodes"] = [({"role": role}, float(count)) for role, count in counts.items()
                         if role in ROLES or count]
    for node in node_list.nodes:
        out["htap_node_info"].append(({"node_id": label_value(node.id, max_label_length),
                                       "node_name": label_value(node.name, max_label_length),
                                       "role": node.role}, 1.0))
    if statuses is None:
        return out
    health = {node.id: node for node in statuses.nodes}
    listed: list[tuple[str, str, str]] = []
    for node in node_list.nodes:
        found = health.get(node.id)
        listed.append((node.id, node.name or (found.name if found else ""), found.status if found else UNKNOWN))
    known = {node.id for node in node_list.nodes}
    listed.extend((node.id, node.name, node.status) for node in statuses.nodes if node.id not in known)
    for node_id, name, status in listed:
        labels = {"node_id": label_value(node_id, max_label_length), "node_name": label_value(name, max_label_length)}
        for value in STATUSES:
            out["htap_node_status"].append(({**labels, "status": value}, 1.0 if status == value else 0.0))
        if status == UNKNOWN:
            out["htap_node_status"].append(({**labels, "status": UNKNOWN}, 1.0))
    return out



@dataclass(frozen=True)
class NodesCollector:
    """ListInstanceNode (roles), then ListStarrocksInstanceInfo (health) where the TaurusDB instance
    the HTAP instance belongs to is known: both calls together are one run."""

    interval: float
    max_label_length: int = DEFAULT_MAX_LABEL_LENGTH
    name: str = "nodes"
    families: tuple[Family, ...] = declare(FAMILIES)
    riders: tuple[str, ...] = ()
    reports_up: bool = False
    # Projects already told about (once each): their instances without a TaurusDB id export roles
    # only. Once per project, not per instance: a fleet listed without the ids would otherwise log
    # a line per instance (20,000 at 20,000 instances), all saying the same.
    _told: set[str] = field(default_factory=set, compare=False, repr=False)

    def retain(self, instance_ids: set[str]) -> None:
        """Nothing kept per instance (the roles-only line is said once per project)."""

    async def collect(self, instance: InstanceIdentity, client: ProjectClient) -> CollectorOutput:
        base = f"/v3/{client.project_id}/instances"
        node_list = parse_node_list(await get_json(client, LIST_NODES_API,
                                                   f"{base}/{instance.instance_id}/starrocks/nodes"))
        statuses = None
        taurus_id = instance.taurus_instance_id
        if taurus_id is None:
            if client.project_id not in self._told:
                self._told.add(client.project_id)
                log.info("node status needs the TaurusDB instance id: exporting node roles only for the"
                         " instances of this project listed without it, this one the first (set"
                         " taurus_instance_id on them, or use discovery); said once per project",
                         extra={"project_id": client.project_id, "instance_id": instance.instance_id,
                                "instance_name": instance.instance_name})
        else:
            document = await get_json(client, SHOW_INSTANCE_API, f"{base}/{taurus_id}/starrocks/{instance.instance_id}")
            statuses = parse_instance_info(document, instance.instance_id)
        data = samples(node_list, statuses, max_label_length=self.max_label_length)
        return CollectorOutput(render(instance.writer, data))
