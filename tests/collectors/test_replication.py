"""htap_exporter/collectors/replication.py: the quirky pages of ListStarRocksDataReplications read
exactly, the page walk by total_count, the last-change timestamps, the samples of every family,
and property tests: any JSON-ish document is read or refused with bad_response, never a crash."""

from __future__ import annotations

import asyncio
import json

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from htap_exporter.cloud.transport import ApiError
from htap_exporter.collectors.replication import (FAMILIES, STAGES, LastChange, Replication, Task, list_replications,
                                                  parse_page, parse_percentage, samples, select_tasks)
from tests.examples import examples
from tests.fakes import FixedBodyTransport, fixed_body_client


def row(name: str, **fields: Any) -> dict[str, Any]:
    base = {"task_name": name, "source_database": "orders", "target_database": "orders_sr", "status": "Yes",
            "stage": "incremental", "percentage": "100", "catchup_stage": "incremental", "catchup_percentage": "100"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def serve(tasks: list[dict[str, Any]], *, cap: int = 50, total: Any = None) -> list[dict[str, Any]]:
    """The pages a server capping pages at `cap` serves for limit=100."""
    pages = []
    offset = 0
    while True:
        chunk = tasks[offset:offset + cap]
        pages.append({"total_count": str(len(tasks)) if total is None else total, "replications": chunk,
                      "ext_text": ""})
        if not chunk:
            break
        offset += len(chunk)
        if offset >= len(tasks):
            break
    return pages


def walk(pages: list[Any], max_pages: int = 200) -> tuple[Replication, list[int]]:
    """The list served as `pages`, one per request in order: what was read, and the offsets asked."""
    asked: list[int] = []

    async def fetch(offset: int) -> Any:
        asked.append(offset)
        if len(asked) > len(pages):
            raise AssertionError(f"asked for a page at offset {offset} after the last one")
        return pages[len(asked) - 1]

    return asyncio.run(list_replications(fetch, max_pages=max_pages)), asked


def read_pages(pages: list[Any]) -> Replication:
    return walk(pages)[0]


# --- examples from the issue ------------------------------------------------------------------------------


def test_sixty_tasks_served_fifty_per_page_are_read_whole():
    tasks = [row(f"task_{i:02d}") for i in range(60)]
    pages = serve(tasks)
    assert [len(p["replications"]) for p in pages] == [50, 10]
    result, offsets = walk(pages)
    assert offsets == [0, 50]
    assert [t.name for t in result.tasks] == [f"task_{i:02d}" for i in range(60)]
    assert (result.total_count, result.pages, result.bad_rows, result.bad_values) == (60, 2, 0, 0)
    assert read_pages(pages) == result
    assert samples(result, max_tasks=100, last_change={})["htap_replication_tasks"] == [
        ({"stage": "wait"}, 0.0), ({"stage": "full"}, 0.0), ({"stage": "incremental"}, 60.0),
        ({"stage": "paused"}, 0.0), ({"stage": "cancelled"}, 0.0), ({"stage": "unknown"}, 0.0)]


def test_a_short_first_page_does_not_end_the_walk():
    """A "stop on a page shorter than limit" loop would stop after 50 of 100 tasks."""
    tasks = [row(f"t{i:03d}") for i in range(100)]
    result, offsets = walk(serve(tasks, cap=50))
    assert offsets == [0, 50]
    assert len(result.tasks) == 100


def test_an_empty_page_ends_the_walk_even_below_the_total():
    pages = [{"total_count": "80", "replications": [row(f"t{i}") for i in range(50)]},
             {"total_count": "80", "replications": []}]
    result, offsets = walk(pages)
    assert offsets == [0, 50]
    assert len(result.tasks) == 50


def test_total_count_as_a_number_or_with_spaces():
    assert parse_page({"total_count": 2, "replications": [row("a"), row("b")]}).total_count == 2
    assert parse_page({"total_count": " 2 ", "replications": [row("a"), row("b")]}).total_count == 2


@pytest.mark.parametrize("value, stage", [("Full", "full"), ("full", "full"), ("FULL", "full"),
                                          (" Incremental ", "incremental"), ("Wait", "wait"),
                                          ("paused", "paused"), ("Cancelled", "cancelled")])
def test_stages_in_either_case(value, stage):
    [task] = parse_page({"total_count": "1", "replications": [row("a", stage=value, catchup_stage=value)]}).tasks
    assert (task.stage, task.catchup_stage) == (stage, stage)


@pytest.mark.parametrize("value, ratio", [("45%", 0.45), ("45", 0.45), ("45.5", 0.455), (" 45 % ", 0.45),
                                          ("100%", 1.0), ("0", 0.0), ("00", 0.0), ("100.0", 1.0), (45, 0.45),
                                          (45.5, 0.455), ("150", 1.0), ("-3", 0.0)])
def test_percentages_with_or_without_percent_sign(value, ratio):
    assert parse_percentage(value) == ratio
    [task] = parse_page({"total_count": "1", "replications": [row("a", percentage=value)]}).tasks
    assert task.progress == ratio


@pytest.mark.parametrize("value", ["abc", "45%%", "%", "nan", "inf", True, [45], {"v": 1}])
def test_unreadable_percentage_is_a_bad_value_not_a_bad_row(value):
    page = parse_page({"total_count": "1", "replications": [row("a", catchup_percentage=value)]})
    assert page.tasks[0].catchup_progress is None
    assert (page.bad_rows, page.bad_values) == (0, 1)


@pytest.mark.parametrize("value, normal, bad", [("Yes", True, 0), ("No", False, 0), ("yes", True, 0),
                                                ("NO", False, 0), ("Wait", None, 1), ("", None, 0),
                                                ("abnormal", None, 1), (1, None, 1), (None, None, 0)])
def test_status_yes_no_else_absent(value, normal, bad):
    page = parse_page({"total_count": "1", "replications": [row("a", status=value)]})
    assert page.tasks[0].normal is normal
    assert page.bad_values == bad
    found = samples(Replication(1, page.tasks, 0, 0, 1), max_tasks=10, last_change={})
    expected = [] if normal is None else [({"task_name": "a"}, 1.0 if normal else 0.0)]
    assert found["htap_replication_task_normal"] == expected


def test_missing_fields():
    page = parse_page({"total_count": "3", "replications": [
        {"task_name": "bare"},
        row("no_catchup", catchup_stage=..., catchup_percentage=...),
        row("empty_catchup", catchup_stage="", catchup_percentage=""),
    ]})
    bare, no_catchup, empty = page.tasks
    assert bare == Task("bare", "", "", None, None, None, None, None)
    assert (no_catchup.catchup_stage, no_catchup.catchup_progress) == (None, None)
    assert (empty.catchup_stage, empty.catchup_progress) == (None, None)
    assert (page.bad_rows, page.bad_values) == (0, 0)
    found = samples(Replication(3, page.tasks, 0, 0, 1), max_tasks=10, last_change={})
    assert found["htap_replication_tasks"][-1] == ({"stage": "unknown"}, 1.0)
    assert [labels["task_name"] for labels, _ in found["htap_replication_task_progress_ratio"]] == [
        "empty_catchup", "no_catchup"]
    assert found["htap_replication_task_catchup_progress_ratio"] == []
    assert ({"task_name": "bare", "source_database": "unknown", "target_database": "unknown"}, 1.0) in \
        found["htap_replication_task_info"]
    assert sum(v for labels, v in found["htap_replication_task_stage"] if labels["task_name"] == "bare") == 0


def test_bad_rows_are_counted_and_skipped():
    page = parse_page({"total_count": "6", "replications": [
        row("good"), "not a row", None, {"task_name": ""}, {"task_name": 7, "stage": "full"},
        row("bad_stage", stage="syncing"),
    ]})
    assert [t.name for t in page.tasks] == ["good", "bad_stage"]
    assert (page.rows, page.bad_rows, page.bad_values) == (6, 4, 1)
    assert page.tasks[1].stage is None


def test_a_task_twice_counts_as_a_bad_row():
    pages = [{"total_count": "3", "replications": [row("a"), row("b")]},
             {"total_count": "3", "replications": [row("b"), row("c")]}]
    result, offsets = walk(pages)
    assert offsets == [0, 2]
    assert [t.name for t in result.tasks] == ["a", "b", "c"]
    assert result.bad_rows == 1


# --- refused documents and endless pagination ---------------------------------------------------------


@pytest.mark.parametrize("document, message", [
    ([], "replication list: expected a JSON object, got a list"),
    ("x", "replication list: expected a JSON object, got a string"),
    ({"replications": []}, "replication list: total_count is missing, not a number"),
    ({"total_count": "many", "replications": []}, "replication list: total_count 'many' is not a number"),
    ({"total_count": "-1", "replications": []}, "replication list: total_count -1 is not a count"),
    ({"total_count": True, "replications": []}, "replication list: total_count is a boolean, not a number"),
    ({"total_count": 2.5, "replications": []}, "replication list: total_count 2.5 is not a count"),
    ({"total_count": "1", "replications": {"a": 1}}, "replication list: replications is an object, not a list"),
    ({"total_count": "101", "replications": [row(f"t{i}") for i in range(101)]},
     "replication list: 101 rows on a page of limit 100"),
])
def test_wrong_shapes_are_bad_responses(document, message):
    with pytest.raises(ApiError) as raised:
        parse_page(document)
    assert (raised.value.reason, raised.value.message) == ("bad_response", message)


def test_missing_replications_is_an_empty_list():
    assert parse_page({"total_count": "0"}).tasks == ()
    result, offsets = walk([{"total_count": "0", "replications": None}])
    assert offsets == [0] and result.tasks == ()


def test_a_server_ignoring_offset_is_refused():
    page = {"total_count": "500", "replications": [row(f"t{i}") for i in range(50)]}
    with pytest.raises(ApiError) as raised:
        walk([page, page])
    assert raised.value.message == "replication list: the page at offset 50 repeats rows already read"


def test_more_pages_than_allowed_are_refused_before_the_next_request():
    pages = [{"total_count": "999", "replications": [row(name)]} for name in "abcd"]
    with pytest.raises(ApiError) as raised:
        walk(pages, max_pages=3)
    assert raised.value.reason == "bad_response"
    assert raised.value.message == "replication list: pagination did not end after 3 pages of 100"


def test_a_complete_walk_takes_no_more_pages():
    result, offsets = walk([{"total_count": "1", "replications": [row("a")]}, {"never": "asked"}])
    assert offsets == [0] and [task.name for task in result.tasks] == ["a"]


# --- max_tasks, last change, samples -------------------------------------------------------------------


def task(name: str, normal: bool | None = True, stage: str | None = "incremental", progress: float | None = 1.0,
         catchup_stage: str | None = None, catchup_progress: float | None = None) -> Task:
    return Task(name, "src", "dst", normal, stage, progress, catchup_stage, catchup_progress)


def test_max_tasks_takes_abnormal_first_then_by_name():
    tasks = [task("d"), task("c", normal=False), task("a"), task("b", normal=None), task("e", normal=False)]
    assert [t.name for t in select_tasks(tasks, 3)] == ["c", "e", "a"]
    found = samples(Replication(5, tuple(tasks), 0, 0, 1), max_tasks=3, last_change={})
    assert [labels["task_name"] for labels, _ in found["htap_replication_task_info"]] == ["c", "e", "a"]
    # The aggregates cover every task, not only the ones with series.
    assert sum(v for _, v in found["htap_replication_tasks"]) == 5
    assert found["htap_replication_tasks_abnormal"] == [({}, 2.0)]


def test_last_change_remembers_each_task_state():
    tracker = LastChange()
    assert tracker.observe([task("a", stage="full", progress=0.1), task("b")], now=100.0) == {"a": 100.0, "b": 100.0}
    assert tracker.observe([task("a", stage="full", progress=0.1), task("b")], now=160.0) == {"a": 100.0, "b": 100.0}
    # Progress moved for a; a catch-up started for b.
    assert tracker.observe([task("a", stage="full", progress=0.2), task("b", catchup_stage="full")],
                           now=220.0) == {"a": 220.0, "b": 220.0}
    assert tracker.observe([task("a", stage="full", progress=0.2),
                            task("b", catchup_stage="full", catchup_progress=0.5)], now=280.0) == {"a": 100.0 + 120,
                                                                                                   "b": 280.0}
    assert tracker.observe([task("a", stage="incremental", progress=0.2)], now=340.0) == {"a": 340.0}
    # b vanished and came back: first sight again.
    assert tracker.observe([task("a", stage="incremental", progress=0.2), task("b")], now=400.0) == {
        "a": 340.0, "b": 400.0}


def test_samples_of_every_family_with_always_present_stages():
    tasks = (task("t1", stage="full", progress=0.455, catchup_stage="wait", catchup_progress=0.0),
             task("t2", normal=False, stage=None, progress=None))
    found = samples(Replication(2, tasks, 0, 0, 1), max_tasks=10, last_change={"t1": 50.0, "t2": 60.0})
    assert list(found) == [name for name, _, _ in FAMILIES]
    assert found["htap_replication_tasks"] == [
        ({"stage": "wait"}, 0.0), ({"stage": "full"}, 1.0), ({"stage": "incremental"}, 0.0),
        ({"stage": "paused"}, 0.0), ({"stage": "cancelled"}, 0.0), ({"stage": "unknown"}, 1.0)]
    assert found["htap_replication_tasks_abnormal"] == [({}, 1.0)]
    assert found["htap_replication_task_normal"] == [({"task_name": "t2"}, 0.0), ({"task_name": "t1"}, 1.0)]
    t1_stages = [(labels["stage"], v) for labels, v in found["htap_replication_task_stage"]
                 if labels["task_name"] == "t1"]
    assert t1_stages == [(s, 1.0 if s == "full" else 0.0) for s in STAGES]
    t1_catchup = [(labels["stage"], v) for labels, v in found["htap_replication_task_catchup_stage"]
                  if labels["task_name"] == "t1"]
    assert t1_catchup == [(s, 1.0 if s == "wait" else 0.0) for s in STAGES]
    assert found["htap_replication_task_progress_ratio"] == [({"task_name": "t1"}, 0.455)]
    assert found["htap_replication_task_catchup_progress_ratio"] == [({"task_name": "t1"}, 0.0)]
    assert found["htap_replication_task_last_change_timestamp_seconds"] == [
        ({"task_name": "t2"}, 60.0), ({"task_name": "t1"}, 50.0)]
    assert {name for name, kind, _ in FAMILIES if kind != "gauge"} == set()


def test_long_label_values_are_capped():
    long_db = "d" * 500
    found = samples(Replication(1, (Task("t", long_db, "x", True, "full", 0.5, None, None),), 0, 0, 1),
                    max_tasks=5, last_change={}, max_label_length=64)
    [(labels, _)] = found["htap_replication_task_info"]
    assert len(labels["source_database"]) == 64 and labels["source_database"].startswith("ddd")


# --- properties ---------------------------------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
field_value = json_leaf | st.sampled_from(["Yes", "No", "Full", "incremental", "45%", "45.5", "100"])
row_strategy = st.dictionaries(st.sampled_from(["task_name", "source_database", "target_database", "status",
                                                "stage", "percentage", "catchup_stage", "catchup_percentage",
                                                "is_need_repair"]), field_value, max_size=9) | json_value
page_strategy = st.fixed_dictionaries({}, optional={
    "total_count": json_leaf | st.integers(0, 200).map(str),
    "replications": st.lists(row_strategy, max_size=8) | json_value,
    "ext_text": json_leaf,
}) | json_value


@settings(max_examples=examples(300), deadline=None)
@given(pages=st.lists(page_strategy, min_size=1, max_size=5))
def test_any_document_is_read_or_refused_never_a_crash(pages):
    try:
        result, _ = walk(pages, max_pages=4)
    except ApiError as error:
        assert error.reason == "bad_response"
        return
    except AssertionError as error:  # a list that ends before its total: the fake has no more pages
        assert "after the last one" in str(error)
        return
    found = samples(result, max_tasks=3, last_change=LastChange().observe(result.tasks, 1.0))
    assert sum(v for _, v in found["htap_replication_tasks"]) == len(result.tasks)
    for labels, value in (item for series in found.values() for item in series):
        assert all(isinstance(v, str) for v in labels.values())
        assert value == value  # never NaN
        if "stage" in labels:
            assert labels["stage"] in (*STAGES, "unknown")


stage_text = st.sampled_from(STAGES).flatmap(
    lambda s: st.sampled_from([s, s.upper(), s.capitalize(), f" {s} "]).map(lambda text: (text, s)))
percent_text = st.decimals(min_value=0, max_value=100, places=1).flatmap(
    lambda d: st.sampled_from([f"{d}", f"{d}%", f"{d} %"]).map(lambda text: (text, float(d) / 100)))


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(stage_text, percent_text, st.sampled_from(["Yes", "No"])), min_size=1, max_size=120),
       st.integers(1, 100))
def test_quirky_but_valid_values_are_read_exactly(rows, cap):
    tasks = [row(f"task_{i}", stage=stage[0], percentage=percent[0], status=status,
                 catchup_stage=stage[0], catchup_percentage=percent[0])
             for i, (stage, percent, status) in enumerate(rows)]
    result = read_pages(serve(tasks, cap=cap))
    assert len(result.tasks) == len(rows)
    assert (result.bad_rows, result.bad_values) == (0, 0)
    for parsed, (stage, percent, status) in zip(result.tasks, rows, strict=True):
        assert parsed.stage == parsed.catchup_stage == stage[1]
        assert parsed.progress == parsed.catchup_progress == pytest.approx(percent[1], abs=1e-12)
        assert parsed.normal is (status == "Yes")


def test_a_percentage_beyond_the_float_range_is_unreadable_not_a_failed_run():
    assert parse_percentage(10 ** 400) is None


def test_the_collector_forgets_instances_no_longer_polled():
    from htap_exporter.collectors.registry import CollectorSet
    from htap_exporter.config import CollectorsConfig, Config, ReplicationConfig
    collectors = CollectorSet(lambda: 0.0)
    config = Config(file="c.yaml", projects=(), collectors=CollectorsConfig(replication=ReplicationConfig(enabled=True)))
    made = collectors.enabled(config)[1]
    made._changes["gone"] = LastChange()  # type: ignore[attr-defined]
    assert collectors.enabled(config)[1] is made and made._changes == {}  # type: ignore[attr-defined]


def test_a_run_whose_tasks_did_not_change_serves_the_lines_of_the_last_and_a_change_writes_them_anew():
    from htap_exporter.collectors.replication import ReplicationCollector
    from htap_exporter.exposition.writer import InstanceIdentity
    now = [1000.0]
    collector = ReplicationCollector(interval=60.0, max_tasks=10, clock=lambda: now[0])
    fresh = ReplicationCollector(interval=60.0, max_tasks=10, clock=lambda: now[0])  # no memory of lines
    identity = InstanceIdentity("i1", "orders", "p", "r")
    tasks = [row("a", percentage="40"), row("b", status="No")]

    def run(made: ReplicationCollector, served: list[dict[str, Any]], who: InstanceIdentity = identity) -> Any:
        [page] = serve(served)
        client = fixed_body_client(FixedBodyTransport(json.dumps(page).encode()), max_pages=10)
        return asyncio.run(made.collect(who, client)).samples

    first = run(collector, tasks)
    run(fresh, tasks)
    now[0] = 1060.0
    assert run(collector, tasks) is first  # the same tasks, the same last changes: nothing written
    now[0] = 1120.0
    moved = [row("a", percentage="41"), row("b", status="No")]
    changed = run(collector, moved)
    assert changed == run(fresh, moved)  # written anew, as a collector without the last lines writes them
    assert b'task_name="a"} 0.41\n' in changed["htap_replication_task_progress_ratio"]
    assert b"} 1120.0\n" in changed["htap_replication_task_last_change_timestamp_seconds"]
    renamed = run(collector, moved, InstanceIdentity("i1", "orders-renamed", "p", "r"))
    assert b'instance_name="orders-renamed"' in renamed["htap_replication_task_info"]


def test_a_negative_zero_percentage_is_zero():
    assert str(parse_percentage("-0")) == str(parse_percentage(-0.0)) == "0.0"
