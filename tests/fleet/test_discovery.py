"""Discovery's two list calls against the simulator over real HTTP: paging, facts, filters, faults."""

from __future__ import annotations

import asyncio

import pytest

from htap_exporter.cloud.client import ProjectClient
from htap_exporter.cloud.auth import StaticTokenAuthenticator
from htap_exporter.config import DiscoveryConfig, Secret, SecretSource, TokenAuth
from htap_exporter.fleet.discovery import DiscoveredInstance, DiscoveryClient, discover, kept, parse_htap_instance
from htap_exporter.redact import Redactor
from htap_exporter.simulator import SIM_TOKEN, Fault, taurus_id_for
from htap_exporter.cloud.transport import ApiError, Transport
from tests.fakes import RunningSimulator

IN17 = "0123456789abcdef0123456789abcdefin17"
ENABLED = DiscoveryConfig(enabled=True)


@pytest.fixture
def client(simulator: RunningSimulator, http, clock, observed) -> DiscoveryClient:
    transport = Transport(http, asyncio.Semaphore(4), 5.0, 8 * 1024 * 1024,
                          lambda api, code, seconds: observed.append((api, code)))
    auth = StaticTokenAuthenticator(TokenAuth(token=SecretSource(value=Secret(SIM_TOKEN))), clock, Redactor())
    api = ProjectClient(endpoint=simulator.base_url, project_id=simulator.sim.project_id, auth=auth,
                  transport=transport, max_pages=20)
    return DiscoveryClient(api, simulator.sim.project_id, max_pages=20)


async def test_finds_every_htap_instance_with_its_facts(simulator: RunningSimulator, client, observed):
    result = await discover(client, ENABLED)
    sim = simulator.sim
    assert {i.id: i.name for i in result.instances} == {i.id: i.name for i in sim.instances.values()}
    first = result.instances[0]
    assert first.facts == (("engine_version", "3.1.6"), ("node_count", "3"), ("status", "normal"))
    assert first.taurus_id == taurus_id_for(0)
    # 3 HTAP instances under 2 TaurusDB instances: one list page, one HTAP list each.
    assert (result.found, result.requests) == (3, 3)
    assert observed == [("list_instances", "200"), ("list_htap_instances", "200"), ("list_htap_instances", "200")]


async def test_pages_through_more_than_a_hundred_taurus_instances(simulator: RunningSimulator, client):
    sim = simulator.sim
    created = {sim.create_instance(f"bulk-{n}").id for n in range(230)}
    result = await discover(client, ENABLED)
    assert created < {i.id for i in result.instances} == set(sim.instances)
    assert len(result.instances) == 233
    # 232 TaurusDB instances: pages of 100, 100, 32, then one HTAP list per TaurusDB instance.
    assert sim.observed.discovery_requests == {"list_instances": 3, "list_htap": 232}
    assert result.requests == 235


async def test_filters_frozen_skipped_statuses_and_names(simulator: RunningSimulator, client):
    sim = simulator.sim
    frozen = sim.create_instance("orders-frozen", frozen=True)
    creating = sim.create_instance("orders-new", status="CREATING")
    test = sim.create_instance("orders-test")
    orders = sim.create_instance("orders-main", status="abnormal")
    settings = DiscoveryConfig(enabled=True, include="orders-.*", exclude=".*-test")
    result = await discover(client, settings)
    assert [i.id for i in result.instances] == [orders.id]
    assert result.instances[0].status == "abnormal"  # a sick instance is still polled, and says so
    everything = await discover(client, DiscoveryConfig(enabled=True, skip_frozen=False, skip_statuses=frozenset()))
    assert {frozen.id, creating.id, test.id, orders.id} <= {i.id for i in everything.instances}


async def test_a_taurus_instance_being_created_is_not_asked_for_its_htap_instances(simulator: RunningSimulator, client):
    sim = simulator.sim
    child = sim.create_instance("later")
    sim.taurus[child.taurus_id].status = "creating"
    result = await discover(client, ENABLED)
    assert child.id not in {i.id for i in result.instances}
    assert sim.observed.discovery_requests["list_htap"] == 2


async def test_taurus_instance_deleted_between_the_two_steps_is_skipped(simulator: RunningSimulator, client):
    sim = simulator.sim
    # The first list still shows it, its HTAP list answers "not found" (deleted meanwhile).
    sim.faults[taurus_id_for(1)] = Fault(kind="status", status=400, error_code="DBS.200022",
                                         error_msg="Instance not found.")
    result = await discover(client, ENABLED)
    assert {i.taurus_id for i in result.instances} == {taurus_id_for(0)}


@pytest.mark.parametrize("target,fault,reason", [
    ("list_instances", Fault(kind="status"), "http"),
    ("list_instances", Fault.from_json({"kind": "throttle"}), "throttled"),
    ("list_instances", Fault(kind="garbage"), "bad_response"),
    ("list_htap", Fault(kind="status"), "http"),
    ("list_htap", Fault(kind="wrong_shape"), "bad_response"),
    # A gateway 404 means the API does not exist at that endpoint: a real failure, not a deletion.
    ("list_htap", Fault(kind="status", status=404, error_code="APIGW.0101", error_msg="API not found"), "http"),
])
async def test_a_failing_call_fails_the_whole_refresh(simulator: RunningSimulator, client, target, fault, reason):
    simulator.sim.faults[target] = fault
    with pytest.raises(ApiError) as raised:
        await discover(client, ENABLED)
    assert raised.value.reason == reason


def test_parse_is_lenient_about_types_and_keeps_only_standard_htap():
    item = {"id": IN17, "name": " orders ", "engine_version": 3.1, "node_num": "5", "is_frozen": True,
            "instance_state": {"instance_status": "normal"}}
    assert parse_htap_instance(item, "t") == DiscoveredInstance(IN17, "orders", "normal", True, "3.1", "5", "t")
    bare = parse_htap_instance({"id": IN17}, "t")
    assert bare == DiscoveredInstance(IN17, IN17, "unknown", False, "unknown", "unknown", "t")
    assert parse_htap_instance({"id": IN17, "status": "ACTIVE", "node_num": True, "is_frozen": "false"},
                               "t").status == "ACTIVE"
    for not_standard in ({"id": IN17[:-4] + "in07"}, {"id": 12}, {"name": "x"}, "text", None):
        assert parse_htap_instance(not_standard, "t") is None
    long_name = parse_htap_instance({"id": IN17, "name": "x" * 500}, "t")
    assert long_name is not None and len(long_name.name) == 128


def test_kept_compares_statuses_case_insensitively():
    instance = DiscoveredInstance(IN17, "a", "Deleting", False, "3", "3", "t")
    assert not kept(instance, ENABLED)
    assert kept(instance, DiscoveryConfig(enabled=True, skip_statuses=frozenset()))
