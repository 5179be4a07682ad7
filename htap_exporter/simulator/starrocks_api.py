"""The StarRocks side of an HTAP instance: its data-sync tasks, its nodes and their health, its
query-queue rule (the documents come from `htap_apis`, which moves them with time).

Fault targets: the operation's name (`list_replications`, `list_nodes`, `show_starrocks_instance`,
`show_query_queue_rule`) for every instance, or `NAME:INSTANCE_ID` for one instance.
"""

from __future__ import annotations

import time
from functools import partial

from aiohttp import web

from htap_exporter.simulator.faults import COMMON, Call, body, document, listing
from htap_exporter.simulator.htap_apis import SimHtapApis, page_window
from htap_exporter.simulator.replies import error
from htap_exporter.simulator.routing import Api
from htap_exporter.simulator.state import SimState

BASE = "/v3/{project_id}/instances/{instance_id}"
BROKEN = {"garbage": body(b'{"total_count": "3", "replications": [{"task_name": '),
          "wrong_shape": document({"unexpected": []})}


def apis(sim: SimState) -> list[Api]:
    documents: dict[str, SimHtapApis] = {}

    def of(call_instance_id: str) -> SimHtapApis:
        found = documents.get(call_instance_id)
        if found is None:
            instance = sim.instances[call_instance_id]
            found = documents[call_instance_id] = SimHtapApis(instance.id, instance.name, seed=instance.seed)
        return found

    async def replications(call: Call) -> web.StreamResponse:
        assert call.instance is not None
        return web.json_response(of(call.instance.id).list_replications(time.time(), call.offset, call.limit))

    async def nodes(call: Call) -> web.StreamResponse:
        assert call.instance is not None
        return web.json_response(of(call.instance.id).list_nodes())

    async def instance_info(call: Call) -> web.StreamResponse:
        assert call.instance is not None
        return web.json_response(of(call.instance.id).show_starrocks_instance(time.time(), project_id=sim.project_id))

    async def queue_rule(call: Call) -> web.StreamResponse:
        assert call.instance is not None
        return web.json_response(of(call.instance.id).show_query_queue_rule())

    return [
        Api("GET", f"{BASE}/starrocks/databases/replication", "list_replications", replications,
            check=partial(_replication_check, sim), faults={**listing("replications"), **BROKEN},
            scoped=("instance_id",)),
        Api("GET", f"{BASE}/starrocks/nodes", "list_nodes", nodes, check=partial(_instance_check, sim),
            faults={**listing("node_list")}, scoped=("instance_id",)),
        Api("GET", "/v3/{project_id}/instances/{taurus_id}/starrocks/{instance_id}", "show_starrocks_instance",
            instance_info, check=partial(_taurus_check, sim), faults={**COMMON, **BROKEN}, scoped=("instance_id",)),
        Api("GET", f"{BASE}/query-queue/rules", "show_query_queue_rule", queue_rule,
            check=partial(_instance_check, sim), faults={**COMMON, **BROKEN}, scoped=("instance_id",)),
    ]


def _instance_check(sim: SimState, request: web.Request) -> Call | web.StreamResponse:
    instance = sim.instances.get(request.match_info["instance_id"])
    if request.match_info["project_id"] != sim.project_id or instance is None:
        return error(400, "DBS.200022", "Instance not found.")
    return Call(request, instance=instance)


def _taurus_check(sim: SimState, request: web.Request) -> Call | web.StreamResponse:
    checked = _instance_check(sim, request)
    if isinstance(checked, Call) and (checked.instance is None
                                      or checked.instance.taurus_id != request.match_info["taurus_id"]):
        return error(400, "DBS.200022", "Instance not found.")
    return checked


def _replication_check(sim: SimState, request: web.Request) -> Call | web.StreamResponse:
    checked = _instance_check(sim, request)
    if not isinstance(checked, Call):
        return checked
    try:
        offset, limit = page_window(request.query.get("limit"), request.query.get("offset"))
    except ValueError as problem:
        return error(400, "DBS.200001", str(problem))
    return Call(request, limit, offset, checked.instance)
