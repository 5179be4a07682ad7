"""Discovery's two steps: `GET /v3/{project_id}/instances` (the project's TaurusDB instances,
paginated, with a total count; fault target `list_instances`) and
`GET /v3/{project_id}/instances/{taurus_id}/htap` (the HTAP instances of one; fault target the
TaurusDB id, or `list_htap` for every one)."""

from __future__ import annotations

import itertools
from functools import partial

from aiohttp import web

from htap_exporter.simulator import faults
from htap_exporter.simulator.faults import Answer, Call
from htap_exporter.simulator.replies import error, page_window
from htap_exporter.simulator.routing import Api
from htap_exporter.simulator.state import Observed, SimState

# These two answer fewer kinds than the session list, and never with `Retry-After`.
LIST_INSTANCES_FAULTS: dict[str, Answer] = {"status": faults.bare_status, "throttle": faults.bare_status,
                                            "garbage": faults.body(b'{"instances": ['), "delay": faults.delay}
LIST_HTAP_FAULTS: dict[str, Answer] = {"status": faults.bare_status, "throttle": faults.bare_status,
                                       "wrong_shape": faults.document({"htap": []})}


def apis(sim: SimState) -> list[Api]:
    return [
        Api("GET", "/v3/{project_id}/instances", "list_instances", partial(list_taurus, sim),
            check=partial(check_taurus, sim), count=count_taurus, faults=LIST_INSTANCES_FAULTS),
        Api("GET", "/v3/{project_id}/instances/{taurus_id}/htap", "list_htap", partial(list_htap, sim),
            count=count_htap, faults=LIST_HTAP_FAULTS, specific=("taurus_id",)),
    ]


def count_taurus(observed: Observed, request: web.Request) -> None:
    observed.discovery_request("list_instances")


def count_htap(observed: Observed, request: web.Request) -> None:
    observed.discovery_request("list_htap")


def check_taurus(sim: SimState, request: web.Request) -> Call | web.StreamResponse:
    window = page_window(request)
    if isinstance(window, web.Response):
        return window
    limit, offset = window
    if request.match_info["project_id"] != sim.project_id:
        return error(403, "DBS.200023", "The project does not match the credentials.")
    return Call(request, limit, offset)


async def list_taurus(sim: SimState, call: Call) -> web.StreamResponse:
    """Step 1: the project's TaurusDB instances, a page at a time."""
    # islice skips at C speed: a page of 50,000 TaurusDB instances without copying the list each time.
    window = itertools.islice(sim.taurus.values(), call.offset, call.offset + call.limit)
    page = [{"id": t.id, "name": t.name, "status": t.status, "type": "Cluster",
             "datastore": {"type": "gaussdb-mysql", "version": "8.0"}} for t in window]
    return web.json_response({"instances": page, "total_count": len(sim.taurus)})


async def list_htap(sim: SimState, call: Call) -> web.StreamResponse:
    """Step 2: the HTAP instances of one TaurusDB instance."""
    taurus_id = call.request.match_info["taurus_id"]
    if call.request.match_info["project_id"] != sim.project_id or taurus_id not in sim.taurus:
        return error(400, "DBS.200022", "Instance not found.")
    children = [i.describe() for i in sim.children.get(taurus_id, {}).values()]
    return web.json_response({"total": len(children), "instances": children})
