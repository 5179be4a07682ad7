"""The simulator's routing, its fault tables and its one middleware, checked directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from htap_exporter.simulator import (SIM_PROJECT_ID, SIM_TOKEN, Fault, Simulator, discovery_api, iam, instance_id_for,
                                     sessions_api, taurus_id_for)
from htap_exporter.simulator.faults import COMMON, FAULT_KINDS, Call, Faults
from htap_exporter.simulator.routing import Api

TOKEN = {"X-Auth-Token": SIM_TOKEN}
SESSIONS = f"/v3/{SIM_PROJECT_ID}/instances/{instance_id_for(0)}/htap/process"
TOYS = f"/v3/{SIM_PROJECT_ID}/instances/{instance_id_for(0)}/toys"


async def list_toys(call: Call) -> web.StreamResponse:
    return web.json_response({"toys": ["ball"]})


class ToySimulator(Simulator):
    """The simulator with one more API family, registered as a new family would be."""

    def apis(self) -> list[Api]:
        return [*super().apis(), Api("GET", "/v3/{project_id}/instances/{instance_id}/toys", "list_toys", list_toys,
                                     specific=("instance_id",))]


Client = TestClient[web.Request, web.Application]


@dataclass
class Served:
    sim: ToySimulator
    client: Client


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    sim = ToySimulator(instances=2, sessions=3)
    async with TestClient(TestServer(sim.app())) as client:
        yield Served(sim, client)


def test_the_routes_are_the_api_surface() -> None:
    routes = {(route.method, route.resource.canonical) for route in Simulator().app().router.routes()
              if route.resource is not None and route.method != "HEAD"}
    assert routes == {
        ("GET", "/v3/{project_id}/instances/{instance_id}/htap/process"),
        ("GET", "/v3/{project_id}/instances"),
        ("GET", "/v3/{project_id}/instances/{taurus_id}/htap"),
        ("GET", "/v3/{project_id}/instances/{instance_id}/starrocks/databases/replication"),
        ("GET", "/v3/{project_id}/instances/{instance_id}/starrocks/nodes"),
        ("GET", "/v3/{project_id}/instances/{taurus_id}/starrocks/{instance_id}"),
        ("GET", "/v3/{project_id}/instances/{instance_id}/query-queue/rules"),
        ("POST", "/v3/auth/tokens"),
        ("GET", "/_sim/state"), ("GET", "/_sim/totals"), ("GET", "/_sim/arrivals"),
        ("PUT", "/_sim/faults/{target}"), ("DELETE", "/_sim/faults/{target}"), ("DELETE", "/_sim/faults"),
        ("PUT", "/_sim/instances/{instance_id}/sessions"), ("POST", "/_sim/instances"),
        ("PATCH", "/_sim/instances/{instance_id}"), ("DELETE", "/_sim/instances/{instance_id}"),
        ("POST", "/_sim/tokens/revoke"), ("PUT", "/_sim/token_ttl"),
    }


def test_every_fault_kind_has_an_answer_on_the_session_list() -> None:
    assert set(sessions_api.FAULTS) == set(FAULT_KINDS)


@pytest.mark.parametrize("table", [COMMON, discovery_api.LIST_INSTANCES_FAULTS, discovery_api.LIST_HTAP_FAULTS,
                                   iam.FAULTS])
def test_fault_tables_know_only_fault_kinds(table: object) -> None:
    assert set(table) <= set(FAULT_KINDS)  # type: ignore[call-overload]


def test_fault_targets_narrow_first() -> None:
    sim = Simulator(instances=1)
    apis = {api.target: api for api in sim.apis()}
    assert set(apis) == {"list_sessions", "list_instances", "list_htap", "iam", "list_replications", "list_nodes",
                         "show_starrocks_instance", "show_query_queue_rule"}
    assert apis["list_sessions"].specific == ("instance_id",)
    assert apis["list_htap"].specific == ("taurus_id",)
    # The StarRocks families fail one instance's call by `NAME:INSTANCE_ID`, never its session list.
    for name in ("list_replications", "list_nodes", "show_starrocks_instance", "show_query_queue_rule"):
        assert (apis[name].specific, apis[name].scoped) == ((), ("instance_id",))


def test_take_prefers_the_named_target_then_everywhere_then_the_family() -> None:
    faults = Faults(list_htap=Fault(kind="status", status=503))
    assert faults.take(["t1", "list_htap"]).status == 503  # type: ignore[union-attr]
    faults["*"] = Fault(kind="status", status=502)
    assert faults.take(["t1", "list_htap"]).status == 502  # type: ignore[union-attr]
    faults["t1"] = Fault(kind="wrong_shape")
    assert faults.take(["t1", "list_htap"]).kind == "wrong_shape"  # type: ignore[union-attr]
    assert Faults().take(["t1", "list_htap"]) is None


def test_take_spends_a_limited_fault() -> None:
    faults = Faults(x=Fault(kind="status", remaining=2))
    assert faults.take(["x"]) is not None and "x" in faults
    assert faults.take(["x"]) is not None and "x" not in faults
    assert faults.take(["x"]) is None


async def test_a_new_family_is_behind_the_middleware(served: Served) -> None:
    sim, client = served.sim, served.client
    response = await client.get(TOYS)
    assert response.status == 401
    assert (await response.json())["error_code"] == "APIG.0301"
    assert sim.observed.auth_failures == 1 and "list_toys" not in sim.observed.calls
    response = await client.get(TOYS, headers=TOKEN)
    assert (response.status, await response.json()) == (200, {"toys": ["ball"]})
    assert sim.observed.calls == {"list_toys": 1} and len(sim.observed.api_request_times) == 1


async def test_a_new_family_answers_the_common_faults(served: Served) -> None:
    sim, client = served.sim, served.client
    sim.faults["list_toys"] = Fault.from_json({"kind": "throttle", "retry_after": "4"})
    response = await client.get(TOYS, headers=TOKEN)
    assert (response.status, response.headers["Retry-After"]) == (429, "4")
    sim.faults.clear()
    sim.faults[instance_id_for(0)] = Fault(kind="html", remaining=1)
    assert (await client.get(TOYS, headers=TOKEN)).status == 502
    # A kind the family has no answer for is used up and otherwise ignored.
    sim.faults["list_toys"] = Fault(kind="garbage", remaining=1)
    response = await client.get(TOYS, headers=TOKEN)
    assert (response.status, await response.json()) == (200, {"toys": ["ball"]})
    assert not sim.faults


async def test_session_list_checks_come_before_its_fault(served: Served) -> None:
    sim, client = served.sim, served.client
    sim.faults[instance_id_for(0)] = Fault(kind="status", remaining=1)
    response = await client.get(SESSIONS + "?limit=0", headers=TOKEN)
    assert (response.status, (await response.json())["error_code"]) == (400, "DBS.200001")
    assert instance_id_for(0) in sim.faults  # not spent by a malformed request
    assert (await client.get(SESSIONS, headers=TOKEN)).status == 500
    response = await client.get(SESSIONS, headers=TOKEN)
    assert response.status == 200 and len((await response.json())["process_list"]) >= 1


async def test_htap_list_fault_comes_before_its_check(served: Served) -> None:
    sim, client = served.sim, served.client
    sim.faults["list_htap"] = Fault(kind="wrong_shape")
    response = await client.get(f"/v3/{SIM_PROJECT_ID}/instances/unknown/htap", headers=TOKEN)
    assert (response.status, await response.json()) == (200, {"htap": []})
    sim.faults.clear()
    response = await client.get(f"/v3/{SIM_PROJECT_ID}/instances/{taurus_id_for(0)}/htap", headers=TOKEN)
    assert [i["id"] for i in (await response.json())["instances"]] == [instance_id_for(0), instance_id_for(1)]
    assert sim.observed.discovery_requests == {"list_htap": 2}


async def test_iam_and_control_need_no_token(served: Served) -> None:
    sim, client = served.sim, served.client
    response = await client.post("/v3/auth/tokens", json={})
    assert (response.status, sim.observed.iam_requests, sim.observed.auth_failures) == (400, 1, 0)
    response = await client.put(f"/_sim/faults/{instance_id_for(1)}", json={"kind": "endless"})
    assert response.status == 200 and sim.faults[instance_id_for(1)].kind == "endless"
    assert (await (await client.get("/_sim/state")).json())["faults"] == {instance_id_for(1): "endless"}
