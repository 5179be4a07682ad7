"""htap_exporter/collectors/nodes.py: roles from ListInstanceNode, health from
ListStarrocksInstanceInfo matched by node id, unknown roles and statuses, and property tests."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from htap_exporter.cloud.transport import ApiError
from htap_exporter.collectors.nodes import (FAMILIES, ROLES, STATUSES, Node, NodeList, NodeStatus, parse_instance_info,
                                            parse_node_list, samples)
from tests.examples import examples

IID = "af315b8e6aaa41799bd9a31f2de15abcin17"

NODE_LIST = {"node_list": [
    {"node_id": "n1no17", "node_name": "sr-fe-1", "role": "fe-leader"},
    {"node_id": "n2no17", "node_name": "sr-fe-2", "role": "fe-follower"},
    {"node_id": "n3no17", "node_name": "sr-fe-3", "role": "FE-Follower"},
    {"node_id": "n4no17", "node_name": "sr-be-1", "role": "be"},
    {"node_id": "n5no17", "node_name": "sr-be-2", "role": "be"},
]}


def info(*groups: list[dict[str, Any]], instance_id: str = IID) -> dict[str, Any]:
    return {"instances": [{"id": instance_id, "name": "sr", "status": "normal", "is_frozen": 0,
                           "groups": [{"id": f"g{i}", "name": f"group{i}", "nodes": nodes}
                                      for i, nodes in enumerate(groups)]}]}


def status_of(found: dict[str, list], node_id: str) -> dict[str, float]:
    return {labels["status"]: value for labels, value in found["htap_node_status"] if labels["node_id"] == node_id}


def test_roles_and_statuses_matched_by_id():
    nodes = parse_node_list(NODE_LIST)
    assert nodes.nodes[0] == Node("n1no17", "sr-fe-1", "fe-leader")
    assert nodes.nodes[2].role == "fe-follower"
    health = parse_instance_info(info(
        [{"id": "n1no17", "name": "sr-fe-1", "status": "normal"},
         {"id": "n2no17", "name": "sr-fe-2", "status": "Normal"},
         {"id": "n3no17", "name": "sr-fe-3", "status": "creating"}],
        [{"id": "n5no17", "name": "sr-be-2", "status": "abnormal"}, {"id": "n4no17", "name": "sr-be-1",
                                                                     "status": "createfail"}]), IID)
    found = samples(nodes, health)
    assert list(found) == [name for name, _, _ in FAMILIES]
    assert found["htap_nodes"] == [({"role": "fe-leader"}, 1.0), ({"role": "fe-follower"}, 2.0),
                                   ({"role": "fe-observer"}, 0.0), ({"role": "be"}, 2.0)]
    assert found["htap_node_info"][0] == ({"node_id": "n1no17", "node_name": "sr-fe-1", "role": "fe-leader"}, 1.0)
    assert len(found["htap_node_info"]) == 5
    assert status_of(found, "n1no17") == {"normal": 1.0, "abnormal": 0.0, "creating": 0.0, "createfail": 0.0}
    assert status_of(found, "n2no17")["normal"] == 1.0
    assert status_of(found, "n3no17")["creating"] == 1.0
    assert status_of(found, "n4no17")["createfail"] == 1.0
    assert status_of(found, "n5no17") == {"normal": 0.0, "abnormal": 1.0, "creating": 0.0, "createfail": 0.0}
    labels = [labels for labels, _ in found["htap_node_status"] if labels["node_id"] == "n5no17"][0]
    assert labels["node_name"] == "sr-be-2"


def test_without_the_health_document_roles_only():
    found = samples(parse_node_list(NODE_LIST), None)
    assert found["htap_node_status"] == []
    assert len(found["htap_node_info"]) == 5


def test_unknown_roles_and_statuses():
    nodes = parse_node_list({"node_list": [
        {"node_id": "a", "node_name": "x", "role": "compute"},
        {"node_id": "b", "node_name": "y"},
        {"node_id": "c", "node_name": "z", "role": "be"},
    ]})
    assert [n.role for n in nodes.nodes] == ["unknown", "unknown", "be"]
    assert nodes.bad_values == 2
    health = parse_instance_info(info([{"id": "a", "status": "rebooting"}, {"id": "b"}]))
    assert [n.status for n in health.nodes] == ["unknown", "unknown"]
    assert health.bad_values == 2  # a missing status counts, as a missing role does
    found = samples(nodes, health)
    assert found["htap_nodes"] == [({"role": "fe-leader"}, 0.0), ({"role": "fe-follower"}, 0.0),
                                   ({"role": "fe-observer"}, 0.0), ({"role": "be"}, 1.0), ({"role": "unknown"}, 2.0)]
    assert status_of(found, "a") == {"normal": 0.0, "abnormal": 0.0, "creating": 0.0, "createfail": 0.0,
                                     "unknown": 1.0}
    # c is not in the health document: its status is unknown, not dropped.
    assert status_of(found, "c")["unknown"] == 1.0


def test_a_node_only_in_the_health_document_still_gets_a_status():
    found = samples(NodeList((Node("a", "fe", "fe-leader"),), 0, 0),
                    parse_instance_info(info([{"id": "a", "name": "fe", "status": "normal"},
                                              {"id": "z", "name": "be-new", "status": "creating"}])))
    assert status_of(found, "z")["creating"] == 1.0
    assert [labels["node_name"] for labels, v in found["htap_node_status"] if labels["node_id"] == "z"][0] == "be-new"


def test_bad_rows_are_counted_and_skipped():
    nodes = parse_node_list({"node_list": [None, "x", {"node_name": "no id"}, {"node_id": ""},
                                           {"node_id": "a", "role": "be"}, {"node_id": "a", "role": "be"}]})
    assert [n.id for n in nodes.nodes] == ["a"]
    assert nodes.bad_rows == 5
    health = parse_instance_info({"instances": [{"id": IID, "groups": [
        {"nodes": [{"id": "a", "status": "normal"}, {"id": 5, "status": "normal"}, []]}, {"nodes": "x"}, "g"]}]})
    assert health.nodes == (NodeStatus("a", "", "normal"),)
    assert health.bad_rows == 4


def test_missing_fields():
    assert parse_node_list({}).nodes == ()
    assert parse_instance_info({"instances": []}).nodes == ()
    assert parse_instance_info({"instances": [{"id": IID}]}).nodes == ()
    assert parse_node_list({"node_list": [{"node_id": "a"}]}).nodes == (Node("a", "", "unknown"),)
    found = samples(parse_node_list({"node_list": [{"node_id": "a"}]}), None)
    assert found["htap_node_info"] == [({"node_id": "a", "node_name": "unknown", "role": "unknown"}, 1.0)]


def test_the_instance_with_the_id_is_chosen():
    document = {"instances": [{"id": "other", "groups": [{"nodes": [{"id": "x", "status": "abnormal"}]}]},
                              {"id": IID, "groups": [{"nodes": [{"id": "y", "status": "normal"}]}]}]}
    assert [n.id for n in parse_instance_info(document, IID).nodes] == ["y"]
    assert [n.id for n in parse_instance_info(document).nodes] == ["x"]


@pytest.mark.parametrize("parse, document, message", [
    (parse_node_list, [], "node list: expected a JSON object, got a list"),
    (parse_node_list, {"node_list": {"a": 1}}, "node list: node_list is an object, not a list"),
    (parse_instance_info, "x", "instance info: expected a JSON object, got a string"),
    (parse_instance_info, {}, "instance info: instances is missing, not a list"),
    (parse_instance_info, {"instances": {"id": IID}}, "instance info: instances is an object, not a list"),
    (parse_instance_info, {"instances": [{"id": IID, "groups": 3}]}, "instance info: groups is a number, not a list"),
])
def test_wrong_shapes_are_bad_responses(parse, document, message):
    with pytest.raises(ApiError) as raised:
        parse(document)
    assert (raised.value.reason, raised.value.message) == ("bad_response", message)


# --- properties ---------------------------------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
node_id = st.sampled_from(["a", "b", "c", ""]) | json_leaf
list_row = st.fixed_dictionaries({}, optional={"node_id": node_id, "node_name": json_leaf,
                                               "role": st.sampled_from([*ROLES, "FE-LEADER", "x"]) | json_leaf})
info_node = st.fixed_dictionaries({}, optional={"id": node_id, "name": json_leaf,
                                                "status": st.sampled_from([*STATUSES, "Normal", "x"]) | json_leaf})
list_doc = st.fixed_dictionaries({}, optional={"node_list": st.lists(list_row | json_value, max_size=6) | json_value}) \
    | json_value
info_doc = st.fixed_dictionaries({}, optional={"instances": st.lists(st.fixed_dictionaries({}, optional={
    "id": st.just(IID) | json_leaf,
    "groups": st.lists(st.fixed_dictionaries({}, optional={"nodes": st.lists(info_node | json_value, max_size=5)
                                                           | json_value}) | json_value, max_size=3) | json_value,
}) | json_value, max_size=3) | json_value}) | json_value


@settings(max_examples=examples(300), deadline=None)
@given(list_doc, info_doc)
def test_any_documents_are_read_or_refused_never_a_crash(node_document, info_document):
    try:
        nodes = parse_node_list(node_document)
    except ApiError as error:
        assert error.reason == "bad_response"
        return
    try:
        health = parse_instance_info(info_document, IID)
    except ApiError as error:
        assert error.reason == "bad_response"
        health = None
    found = samples(nodes, health)
    assert [labels["role"] for labels, _ in found["htap_nodes"]][:4] == list(ROLES)
    assert sum(v for _, v in found["htap_nodes"]) == len(nodes.nodes)
    per_node: dict[str, float] = {}
    for labels, value in found["htap_node_status"]:
        assert labels["status"] in (*STATUSES, "unknown")
        per_node[labels["node_id"]] = per_node.get(labels["node_id"], 0.0) + value
    assert all(total == 1.0 for total in per_node.values())  # exactly one current status per node


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ROLES), st.sampled_from(STATUSES), st.booleans()), max_size=30))
def test_valid_values_in_any_case_are_read_exactly(nodes):
    node_document = {"node_list": [
        {"node_id": f"n{i}", "node_name": f"node-{i}", "role": role.upper() if upper else role}
        for i, (role, _, upper) in enumerate(nodes)]}
    health = info([{"id": f"n{i}", "name": f"node-{i}", "status": status.capitalize() if upper else status}
                   for i, (_, status, upper) in enumerate(nodes)])
    found = samples(parse_node_list(node_document), parse_instance_info(health, IID))
    assert dict((labels["role"], v) for labels, v in found["htap_nodes"]) == {
        role: float(sum(1 for r, _, _ in nodes if r == role)) for role in ROLES}
    for i, (_, status, _) in enumerate(nodes):
        assert status_of(found, f"n{i}") == {s: 1.0 if s == status else 0.0 for s in STATUSES}
