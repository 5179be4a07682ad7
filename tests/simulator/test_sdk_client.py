"""The official SDK (huaweicloudsdkgaussdb) as a client of the simulator's StarRocks endpoints: it
signs with AK/SK, calls each one over HTTP and parses the answer into its own models, so the
simulator's shapes are the SDK's, not our reading of them."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkgaussdb.v3 import (GaussDBClient, ListInstanceNodeRequest, ListStarRocksDataReplicationsRequest,
                                      ListStarrocksInstanceInfoRequest, ShowHtapQueryQueuesRuleRequest)

from htap_exporter.collectors import nodes, query_queue, replication
from htap_exporter.simulator import SIM_ACCESS_KEY, SIM_SECRET_KEY, Simulator, instance_id_for, start


@pytest.fixture
async def sdk_and_sim() -> AsyncIterator[tuple[GaussDBClient, Simulator]]:
    simulator = Simulator(instances=2)
    runner, base_url = await start(simulator)
    config = HttpConfig.get_default_config()
    config.timeout = (5, 5)
    client = (GaussDBClient.new_builder()
              .with_credentials(BasicCredentials(SIM_ACCESS_KEY, SIM_SECRET_KEY, simulator.project_id))
              .with_endpoint(base_url).with_http_config(config).build())
    try:
        yield client, simulator
    finally:
        await runner.cleanup()


async def call(function: Any, request: Any) -> Any:
    return await asyncio.to_thread(function, request)


async def test_the_sdk_signs_calls_and_parses_every_starrocks_endpoint(sdk_and_sim):
    client, simulator = sdk_and_sim
    instance = simulator.instances[instance_id_for(0)]

    page = await call(client.list_star_rocks_data_replications,
                      ListStarRocksDataReplicationsRequest(instance_id=instance.id, limit="100", offset="0"))
    assert int(page.total_count) == len(page.replications) >= 3
    ours = replication.parse_page(page.to_json_object())
    assert {task.name for task in ours.tasks} == {task.task_name for task in page.replications}

    listed = await call(client.list_instance_node, ListInstanceNodeRequest(instance_id=instance.id))
    roles = nodes.parse_node_list(listed.to_json_object())
    assert sorted(node.id for node in roles.nodes) == sorted(node.node_id for node in listed.node_list)
    assert {node.role for node in roles.nodes} >= {"fe-leader", "be"}

    info = await call(client.list_starrocks_instance_info,
                      ListStarrocksInstanceInfoRequest(instance_id=instance.taurus_id, starrocks_instance_id=instance.id))
    health = nodes.parse_instance_info(info.to_json_object(), instance.id)
    assert {node.id for node in health.nodes} == {node.id for node in roles.nodes}

    rule = await call(client.show_htap_query_queues_rule, ShowHtapQueryQueuesRuleRequest(instance_id=instance.id))
    parsed = query_queue.parse_rule(rule.to_json_object())
    assert parsed.enabled is not None and parsed.bad_values == 0
    assert simulator.observed.auth_failures == 0
    assert {name: simulator.observed.calls.get(name) for name in (
        "list_replications", "list_nodes", "show_starrocks_instance", "show_query_queue_rule")} == {
        "list_replications": 1, "list_nodes": 1, "show_starrocks_instance": 1, "show_query_queue_rule": 1}
