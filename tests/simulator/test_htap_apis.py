"""htap_exporter/simulator/htap_apis.py: the official SDK's models read each simulated document
(every field a field of the model, of the model's type, read back equal), the data moves as the
demo needs, and the exporter's own parsers read the documents whole."""

from __future__ import annotations

import asyncio

import importlib
import itertools
import warnings
from typing import Any

import pytest
from huaweicloudsdkcore.client import Client

from htap_exporter.collectors import nodes as nodes_collector
from htap_exporter.collectors import query_queue as queue_collector
from htap_exporter.collectors import replication as replication_collector
from htap_exporter.simulator.htap_apis import (ABNORMAL_NODE_PERIOD, CATCHUP_PERIOD, FULL_SYNC_PERIOD,
                                               REPLICATION_PAGE_CAP, SimHtapApis, page_window)

IID = "af315b8e6aaa41799bd9a31f2de15abcin17"
PROJECT_ID = "0123456789abcdef0123456789abcdef"
MODELS = importlib.import_module("huaweicloudsdkgaussdb.v3.model")
PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": float}


def sdk_read(document: dict[str, Any], response: str) -> Any:
    """The SDK's own deserializer, as its client runs it on a response body."""
    client = Client()
    client.model_package = MODELS
    return client._deserialize(document, response)


def check_types(value: Any, kind: str, where: str) -> None:
    """Every field of `value` is a field of the SDK model `kind`, of the model's declared type."""
    if kind.startswith("list["):
        assert isinstance(value, list), where
        for index, item in enumerate(value):
            check_types(item, kind[5:-1], f"{where}[{index}]")
        return
    if kind in PRIMITIVES:
        assert type(value) is PRIMITIVES[kind], f"{where}: {value!r} is not {kind}"
        return
    model = getattr(MODELS, kind)
    assert isinstance(value, dict), where
    fields = {json_name: name for name, json_name in model.attribute_map.items()}
    for key, item in value.items():
        assert key in fields, f"{where}.{key}: not a field of {kind}"
        check_types(item, model.openapi_types[fields[key]], f"{where}.{key}")


def without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value]
    return value


def assert_sdk_reads(document: dict[str, Any], response: str) -> None:
    check_types(document, response, response)
    with warnings.catch_warnings():
        # to_dict() of a response is deprecated for to_json_object(), which only holds a raw HTTP body.
        warnings.simplefilter("ignore", DeprecationWarning)
        read_back = sdk_read(document, response).to_dict()
    assert without_none(read_back) == document


# Moments that show each moving part: full sync under way, a catch-up, an abnormal task and node.
MOMENTS = [0.0, 100.0, 1234.5, 2500.0, 3599.0, 1_765_000_000.0, 1_765_001_800.0]


@pytest.mark.parametrize("now", MOMENTS)
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_the_sdk_reads_every_document(now, seed):
    apis = SimHtapApis(IID, "orders-htap", seed=seed, extra_tasks=3)
    assert_sdk_reads(apis.list_replications(now), "ListStarRocksDataReplicationsResponse")
    assert_sdk_reads(apis.list_nodes(), "ListInstanceNodeResponse")
    assert_sdk_reads(apis.show_starrocks_instance(now, project_id=PROJECT_ID), "ListStarrocksInstanceInfoResponse")
    assert_sdk_reads(apis.show_query_queue_rule(), "ShowHtapQueryQueuesRuleResponse")


def test_the_sdk_fields_hold_the_values():
    apis = SimHtapApis(IID, "orders-htap", seed=3)
    page = sdk_read(apis.list_replications(0.0), "ListStarRocksDataReplicationsResponse")
    assert page.total_count == "3"
    assert [task.task_name for task in page.replications] == ["orders_full_sync", "sales_sync", "events_sync"]
    listed = sdk_read(apis.list_nodes(), "ListInstanceNodeResponse")
    assert [node.role for node in listed.node_list] == ["fe-leader", "fe-follower", "fe-follower", "be", "be", "be"]
    info = sdk_read(apis.show_starrocks_instance(0.0, project_id=PROJECT_ID), "ListStarrocksInstanceInfoResponse")
    [instance] = info.instances
    assert instance.id == IID and instance.is_frozen == 0
    assert sorted(node.id for group in instance.groups for node in group.nodes) == sorted(
        node.node_id for node in listed.node_list)
    rule = sdk_read(apis.show_query_queue_rule(), "ShowHtapQueryQueuesRuleResponse").query_queue_rule
    assert rule.enable_query_queue_select == "false"
    assert rule.query_queue_max_queued_queries == 1024


def test_pages_are_capped_at_fifty_and_read_whole_by_total_count():
    apis = SimHtapApis(IID, "orders-htap", extra_tasks=57)
    first = apis.list_replications(0.0, offset=0, limit=100)
    assert (first["total_count"], len(first["replications"])) == ("60", REPLICATION_PAGE_CAP)
    async def fetch(offset: int) -> Any:
        return apis.list_replications(0.0, offset=offset, limit=100)

    result = asyncio.run(replication_collector.list_replications(fetch, max_pages=10))
    assert (len(result.tasks), result.pages, result.bad_rows, result.bad_values) == (60, 2, 0, 0)
    assert apis.list_replications(0.0, offset=55, limit=3)["replications"][0]["task_name"] == "table_sync_052"
    assert apis.list_replications(0.0, offset=60)["replications"] == []


@pytest.mark.parametrize("limit, offset, expected", [(None, None, (0, 100)), ("10", "20", (20, 10)),
                                                     ("100", "0", (0, 100))])
def test_page_window(limit, offset, expected):
    assert page_window(limit, offset) == expected


@pytest.mark.parametrize("limit, offset, message", [("0", "0", "limit must be between 1 and 100"),
                                                    ("101", "0", "limit must be between 1 and 100"),
                                                    ("10", "-1", "offset must not be negative"),
                                                    ("ten", "0", "limit and offset must be integers")])
def test_page_window_refuses(limit, offset, message):
    with pytest.raises(ValueError, match=message):
        page_window(limit, offset)


def read_tasks(apis: SimHtapApis, now: float) -> dict[str, replication_collector.Task]:
    result = replication_collector.merge_pages([replication_collector.parse_page(apis.list_replications(now))])
    return {task.name: task for task in result.tasks}


def test_the_data_moves():
    apis = SimHtapApis(IID, "orders-htap", seed=5)
    seen_full = [read_tasks(apis, float(t))["orders_full_sync"] for t in range(0, int(FULL_SYNC_PERIOD), 60)]
    full = [task.progress for task in seen_full if task.stage == "full"]
    steps = [later - earlier for earlier, later in itertools.pairwise(full)]
    # Progressing: it rises minute by minute, except once where the sampled hour wraps round.
    assert len(full) == 40 and sum(1 for step in steps if step <= 0) <= 1
    assert {task.stage for task in seen_full} == {"full", "incremental"}
    catchups = [read_tasks(apis, float(t))["sales_sync"] for t in range(0, int(CATCHUP_PERIOD), 30)]
    assert all(task.stage == "incremental" for task in catchups)
    assert {task.catchup_stage for task in catchups} == {"full", "incremental"}  # served as "Full"
    statuses = {read_tasks(apis, float(t))["events_sync"].normal for t in range(0, 3600, 60)}
    assert statuses == {True, False}
    node_states = set()
    for t in range(0, int(ABNORMAL_NODE_PERIOD), 60):
        health = nodes_collector.parse_instance_info(apis.show_starrocks_instance(float(t), project_id=PROJECT_ID), IID)
        node_states.add(tuple(sorted(node.status for node in health.nodes)))
    assert node_states == {("normal",) * 6, ("abnormal",) + ("normal",) * 5}


def test_the_exporter_reads_the_documents_without_a_bad_value():
    apis = SimHtapApis(IID, "orders-htap", seed=2, extra_tasks=2)
    for now in MOMENTS:
        result = replication_collector.merge_pages([replication_collector.parse_page(apis.list_replications(now))])
        assert (result.bad_rows, result.bad_values) == (0, 0)
        assert all(task.stage and task.progress is not None and task.normal is not None for task in result.tasks)
        node_list = nodes_collector.parse_node_list(apis.list_nodes())
        health = nodes_collector.parse_instance_info(apis.show_starrocks_instance(now, project_id=PROJECT_ID), IID)
        assert (node_list.bad_rows, node_list.bad_values, health.bad_rows, health.bad_values) == (0, 0, 0, 0)
        found = nodes_collector.samples(node_list, health)
        assert dict((labels["role"], v) for labels, v in found["htap_nodes"]) == {
            "fe-leader": 1.0, "fe-follower": 2.0, "fe-observer": 0.0, "be": 3.0}
    rule = queue_collector.parse_rule(apis.show_query_queue_rule())
    assert rule == queue_collector.QueueRule(True, 30.0, 1024.0, 300.0, 0.8, 0.0, 0)
