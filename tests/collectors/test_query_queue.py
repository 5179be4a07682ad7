"""htap_exporter/collectors/query_queue.py: "true"/"false" strings, numbers as strings,
percentages as ratios, 0 = unlimited, missing and bad values, and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from htap_exporter.cloud.transport import ApiError
from htap_exporter.collectors.query_queue import FAMILIES, QueueRule, parse_rule, samples
from tests.examples import examples

SDK_SHAPE = {"query_queue_rule": {
    "enable_query_queue_select": "true", "query_queue_concurrency_limit": 20,
    "query_queue_mem_used_pct_limit": 80, "query_queue_cpu_used_pct_limit": 95,
    "query_queue_max_queued_queries": 1024, "query_queue_pending_timeout_second": 300}}


def test_the_sdk_shape():
    rule = parse_rule(SDK_SHAPE)
    assert rule == QueueRule(enabled=True, concurrency_limit=20.0, max_queued_queries=1024.0,
                             pending_timeout_seconds=300.0, memory_limit_ratio=0.8, cpu_limit_ratio=0.95, bad_values=0)
    assert samples(rule) == {
        "htap_query_queue_enabled": [({}, 1.0)],
        "htap_query_queue_concurrency_limit": [({}, 20.0)],
        "htap_query_queue_max_queued_queries": [({}, 1024.0)],
        "htap_query_queue_pending_timeout_seconds": [({}, 300.0)],
        "htap_query_queue_memory_limit_ratio": [({}, 0.8)],
        "htap_query_queue_cpu_limit_ratio": [({}, 0.95)],
    }
    assert list(samples(rule)) == [name for name, _, _ in FAMILIES]


def test_strings_for_everything_and_zero_is_unlimited():
    rule = parse_rule({"query_queue_rule": {
        "enable_query_queue_select": "False", "query_queue_concurrency_limit": "0",
        "query_queue_mem_used_pct_limit": "0", "query_queue_cpu_used_pct_limit": " 45.5 ",
        "query_queue_max_queued_queries": "1024", "query_queue_pending_timeout_second": "300"}})
    assert rule == QueueRule(enabled=False, concurrency_limit=0.0, max_queued_queries=1024.0,
                             pending_timeout_seconds=300.0, memory_limit_ratio=0.0, cpu_limit_ratio=0.455, bad_values=0)
    assert samples(rule)["htap_query_queue_enabled"] == [({}, 0.0)]


@pytest.mark.parametrize("value, enabled", [("true", True), ("TRUE", True), (" false ", False), (True, True),
                                            (False, False)])
def test_switch(value, enabled):
    assert parse_rule({"query_queue_rule": {"enable_query_queue_select": value}}).enabled is enabled


def test_missing_and_bad_values_are_absent():
    rule = parse_rule({"query_queue_rule": {
        "enable_query_queue_select": "yes", "query_queue_concurrency_limit": -1,
        "query_queue_mem_used_pct_limit": 150, "query_queue_cpu_used_pct_limit": "lots",
        "query_queue_max_queued_queries": None}})
    assert rule == QueueRule(None, None, None, None, None, None, bad_values=4)
    assert samples(rule) == {name: [] for name, _, _ in FAMILIES}
    assert parse_rule({"query_queue_rule": {}}).bad_values == 0


@pytest.mark.parametrize("document, message", [
    ([], "query-queue rule: expected a JSON object, got a list"),
    ({}, "query-queue rule: query_queue_rule is missing, not an object"),
    ({"query_queue_rule": "on"}, "query-queue rule: query_queue_rule is a string, not an object"),
])
def test_wrong_shapes_are_bad_responses(document, message):
    with pytest.raises(ApiError) as raised:
        parse_rule(document)
    assert (raised.value.reason, raised.value.message) == ("bad_response", message)


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=10)
KEYS = ["enable_query_queue_select", "query_queue_concurrency_limit", "query_queue_mem_used_pct_limit",
        "query_queue_cpu_used_pct_limit", "query_queue_max_queued_queries", "query_queue_pending_timeout_second"]


@settings(max_examples=examples(300), deadline=None)
@given(st.fixed_dictionaries({}, optional={"query_queue_rule": st.dictionaries(
    st.sampled_from(KEYS) | st.text(max_size=5), json_leaf | st.sampled_from(["true", "false", "12", "45.5"]))
    | json_value}) | json_value)
def test_any_document_is_read_or_refused_never_a_crash(document):
    try:
        rule = parse_rule(document)
    except ApiError as error:
        assert error.reason == "bad_response"
        return
    for series in samples(rule).values():
        for labels, value in series:
            assert labels == {} and value >= 0 and value == value


@settings(max_examples=examples(200), deadline=None)
@given(st.booleans(), st.integers(0, 100), st.integers(0, 100), st.integers(0, 100), st.integers(0, 10**6),
       st.integers(0, 10**6), st.booleans())
def test_valid_values_as_numbers_or_strings_are_read_exactly(on, concurrency, mem, cpu, queued, timeout, as_strings):
    def v(number: int) -> int | str:
        return str(number) if as_strings else number
    rule = parse_rule({"query_queue_rule": {
        "enable_query_queue_select": "true" if on else "false", "query_queue_concurrency_limit": v(concurrency),
        "query_queue_mem_used_pct_limit": v(mem), "query_queue_cpu_used_pct_limit": v(cpu),
        "query_queue_max_queued_queries": v(queued), "query_queue_pending_timeout_second": v(timeout)}})
    assert rule == QueueRule(on, concurrency, queued, timeout, mem / 100, cpu / 100, 0)


def test_an_integer_beyond_the_float_range_is_a_bad_value_not_a_failed_run():
    rule = parse_rule({"query_queue_rule": {"enable_query_queue_select": "true",
                                            "query_queue_concurrency_limit": 10 ** 400}})
    assert rule.concurrency_limit is None and rule.bad_values == 1
