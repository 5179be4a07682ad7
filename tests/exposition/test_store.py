"""The fast writer against its oracle: prometheus_client's families rendered by its own
`generate_latest` (text 0.0.4 and OpenMetrics) must parse back to exactly the same samples."""

from __future__ import annotations

import dataclasses
import math
import subprocess
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from htap_exporter.config import MetricsConfig
from tests.examples import examples
from tests.fakes import make_store
from tests.fakes import documentation, PollState, render_instance

DOCUMENTATION = documentation()
from htap_exporter.exposition.writer import InstanceIdentity
from htap_exporter.exposition.store import InstanceStatus
from htap_exporter.exposition.selfmetrics import SelfMetrics
from htap_exporter.collectors.sessions.counting import aggregate, parse_session
from htap_exporter.exposition.store import Store
from htap_exporter.cloud.errors import REASONS
from tests.exposition.test_metrics import promtool

INSTANCE_LABELS = ["instance_id", "instance_name"]


# --- the oracle: the same metrics built as prometheus_client families ---------------------------


def oracle_families(identity: InstanceIdentity, state: PollState) -> list[Metric]:
    ids = [identity.instance_id, identity.instance_name]

    def single(name: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, DOCUMENTATION[name], labels=INSTANCE_LABELS)
        family.add_metric(ids, value)
        return family

    def by(name: str, label: str, values: dict) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, DOCUMENTATION[name], labels=[*INSTANCE_LABELS, label])
        for key, value in sorted(values.items()):
            family.add_metric([*ids, key], value)
        return family

    families: list[Metric] = [] if state.pending else [single("htap_up", 1 if state.up else 0)]
    info = GaugeMetricFamily("htap_instance_info", DOCUMENTATION["htap_instance_info"],
                             labels=[*INSTANCE_LABELS, "project_id", "region"])
    info.add_metric([*ids, identity.project_id, identity.region], 1)
    families.append(info)
    stats = state.stats if state.up else None
    if stats is not None:
        families += [single("htap_sessions", stats.sessions),
                     by("htap_sessions_by_state", "state", stats.by_state),
                     by("htap_sessions_by_command", "command", stats.by_command),
                     by("htap_sessions_by_user", "user", stats.by_user),
                     by("htap_sessions_by_database", "database", stats.by_database)]
        if stats.by_host is not None:
            families.append(by("htap_sessions_by_host", "host", stats.by_host))
        families.append(by("htap_session_max_duration_seconds", "command", stats.max_duration_by_command))
        histogram = GaugeHistogramMetricFamily("htap_active_session_duration_seconds",
                                               DOCUMENTATION["htap_active_session_duration_seconds"],
                                               labels=INSTANCE_LABELS)
        histogram.add_metric(ids, [(floatToGoString(bound), count) for bound, count in stats.active_buckets],
                             gsum_value=stats.active_sum)
        families.append(histogram)
    if state.poll_duration is not None:
        families.append(single("htap_poll_duration_seconds", state.poll_duration))
    if state.last_success is not None:
        families.append(single("htap_last_poll_success_timestamp_seconds", state.last_success))
    errors = CounterMetricFamily("htap_poll_errors", DOCUMENTATION["htap_poll_errors"],
                                 labels=[*INSTANCE_LABELS, "reason"])
    for reason in REASONS:
        errors.add_metric([*ids, reason], state.errors.get(reason, 0))
    families.append(errors)
    skipped = CounterMetricFamily("htap_poll_skipped_ticks", DOCUMENTATION["htap_poll_skipped_ticks"],
                                  labels=INSTANCE_LABELS)
    skipped.add_metric(ids, state.skipped_ticks)
    families.append(skipped)
    by_collector = [*INSTANCE_LABELS, "collector"]
    if not state.pending:
        success = GaugeMetricFamily("htap_collector_success", DOCUMENTATION["htap_collector_success"],
                                    labels=by_collector)
        success.add_metric([*ids, "sessions"], 1 if state.up else 0)
        families.append(success)
    if state.last_success is not None:
        last = GaugeMetricFamily("htap_collector_last_success_timestamp_seconds",
                                 DOCUMENTATION["htap_collector_last_success_timestamp_seconds"], labels=by_collector)
        last.add_metric([*ids, "sessions"], state.last_success)
        families.append(last)
    collector_errors = CounterMetricFamily("htap_collector_errors", DOCUMENTATION["htap_collector_errors"],
                                           labels=[*by_collector, "reason"])
    for reason in REASONS:
        collector_errors.add_metric([*ids, "sessions", reason], state.errors.get(reason, 0))
    families.append(collector_errors)
    return families


class Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)


def merged(items: list[tuple[InstanceIdentity, PollState]]) -> Families:
    """One family per name holding every instance's samples, as a single collector would yield."""
    by_name: dict[str, Metric] = {}
    for identity, state in items:
        for family in oracle_families(identity, state):
            if family.name in by_name:
                by_name[family.name].samples.extend(family.samples)
            else:
                by_name[family.name] = family
    return Families(list(by_name.values()))


def parsed(families) -> dict[str, tuple[str, list]]:
    result = {}
    for family in families:
        assert family.name not in result, family.name
        result[family.name] = (family.type, sorted(
            (s.name, tuple(sorted(s.labels.items())), repr(s.value)) for s in family.samples))
    return result


def store_of(items: list[tuple[InstanceIdentity, PollState]]) -> Store:
    store = make_store()
    for identity, state in items:
        store.put(identity.instance_id, render_instance(identity, state))
    return store


# --- strategies ------------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8"), max_size=40)
row = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.integers(0, 50).map(str), st.integers(0, 50)),
    "user": st.one_of(text, st.sampled_from(["app", "etl", " app "])),
    "database": text, "host": st.one_of(text, st.just("10.0.0.1:3306"), st.just("[::1]:5000")),
    "state": st.one_of(text, st.sampled_from(["OK", "EOF", "ERR"])),
    "command": st.one_of(text, st.sampled_from(["Sleep", "Query", "Daemon"])),
    "duration": st.one_of(st.integers(-5, 10**12), st.floats(allow_nan=True, allow_infinity=True), text,
                          st.none()),
})
config = st.builds(MetricsConfig, max_users=st.integers(1, 5), max_databases=st.integers(1, 5),
                   hosts=st.booleans(), max_hosts=st.integers(1, 5),
                   duration_buckets=st.sampled_from([(1, 5, 10), (0.5,), (1, 5, 10, 30, 60, 300, 600, 1800, 3600),
                                                     (1e-3, 123456789.0)]))
numbers = st.floats(min_value=0, max_value=1e12, allow_nan=False)
instance_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=30)


@st.composite
def instance_states(draw) -> list[tuple[InstanceIdentity, PollState]]:
    items = []
    for index in range(draw(st.integers(1, 4))):
        identity = InstanceIdentity(f"{index:032d}in17", draw(instance_text) + str(index),
                                    draw(instance_text), draw(instance_text))
        rows = draw(st.lists(row, max_size=25))
        up = draw(st.booleans())
        state = PollState(
            up=up,
            stats=aggregate([parse_session(r) for r in rows], draw(config)) if up or draw(st.booleans()) else None,
            poll_duration=draw(st.none() | numbers), last_success=draw(st.none() | numbers),
            errors={reason: draw(st.integers(0, 10**6)) for reason in REASONS},
            skipped_ticks=draw(st.integers(0, 10**9)), pending=draw(st.booleans()))
        items.append((identity, state))
    return items


@given(instance_states())
@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fast_writer_equals_prometheus_client_in_both_formats(items):
    store = store_of(items)
    oracle = merged(items)

    text = store.render().decode()
    assert parsed(parse_text(text)) == parsed(parse_text(generate_latest(oracle).decode()))

    openmetrics = store.render(openmetrics=True).decode() + "# EOF\n"
    expected = generate_openmetrics(oracle).decode()
    assert parsed(parse_openmetrics(openmetrics)) == parsed(parse_openmetrics(expected))


@given(st.data())
@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_an_instance_polled_again_is_written_as_if_for_the_first_time(data):
    """The writer keeps a family's lines while its figures stay the same: every poll's output must
    still equal what a new writer (the one the oracle test checks) writes for the same state.
    The states follow one another as one instance's runs do: its error counts only grow."""
    items = data.draw(instance_states())
    identity = items[0][0]
    states = [state for _, state in items] + data.draw(st.lists(st.sampled_from([state for _, state in items]),
                                                                max_size=4))
    errors: Counter[str] = Counter()
    for state in states:
        errors.update(state.errors)
        again = dataclasses.replace(state, poll_duration=data.draw(st.none() | numbers), errors=dict(errors))
        fresh = dataclasses.replace(identity)  # equal, but with a writer of its own
        assert render_instance(identity, again) == render_instance(fresh, again)


@given(st.data())
@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_body_after_many_puts_equals_one_of_the_last_blocks_alone(data):
    """Puts of one instance, run after run: families whose lines the writer kept (the same bytes
    object as the last block's), families that changed, families that came and went. Whatever the
    store skipped or wrote, both formats of its body equal those of a store given only the last
    blocks."""
    items = data.draw(instance_states())
    identity = items[0][0]
    states = [state for _, state in items] + data.draw(st.lists(st.sampled_from([state for _, state in items]),
                                                                max_size=4))
    store = make_store()
    errors: Counter[str] = Counter()
    for state in states:
        errors.update(state.errors)
        again = dataclasses.replace(state, poll_duration=data.draw(st.none() | numbers), errors=dict(errors))
        store.put(identity.instance_id, render_instance(identity, again))
    alone = make_store()
    alone.put(identity.instance_id, render_instance(dataclasses.replace(identity), again))
    for openmetrics in (False, True):
        assert store.render(openmetrics=openmetrics) == alone.render(openmetrics=openmetrics)


def test_a_block_changed_in_place_and_put_again_is_written_whole():
    identity = InstanceIdentity("0" * 32 + "in17", "orders", "p", "r")
    store = make_store()
    block = render_instance(identity, PollState(up=True, last_success=1.0))
    store.put(identity.instance_id, block)
    block.samples["htap_up"] = identity.writer.single("htap_up", 0)
    store.put(identity.instance_id, block)
    assert b'htap_up{instance_id="' + b"0" * 32 + b'in17",instance_name="orders"} 0.0' in store.render()


def test_known_state_is_byte_identical_to_generate_latest():
    """Beyond equal samples: the same bytes, family by family, as prometheus_client writes them."""
    identity = InstanceIdentity("af315b8e6aaa41799bd9a31f2de15abcin17", 'orders "prod"\\x', "p", "cn-north-4")
    rows = [{"id": "1", "user": "app", "state": "OK", "command": "Query", "database": "db", "host": "1.2.3.4:5",
             "duration": 12}, {"id": "2", "user": "b", "command": "Sleep", "duration": 0.5}]
    state = PollState(up=True, stats=aggregate([parse_session(r) for r in rows], MetricsConfig(hosts=True)),
                      poll_duration=0.123, last_success=1700000000.25, skipped_ticks=2)
    store = store_of([(identity, state)])
    assert store.render() == generate_latest(merged([(identity, state)]))
    assert store.render(openmetrics=True) + b"# EOF\n" == generate_openmetrics(merged([(identity, state)]))


def test_openmetrics_types_names_and_suffixes():
    identity = InstanceIdentity("af315b8e6aaa41799bd9a31f2de15abcin17", "a", "p", "r")
    state = PollState(up=True, stats=aggregate([], MetricsConfig()), poll_duration=1.0, last_success=2.0)
    body = store_of([(identity, state)]).render(openmetrics=True).decode()
    assert "# TYPE htap_poll_errors counter\n" in body and "# HELP htap_poll_errors " in body
    assert "htap_poll_errors_total{" in body and "# TYPE htap_poll_errors_total" not in body
    assert "# TYPE htap_active_session_duration_seconds gaugehistogram\n" in body
    assert "htap_active_session_duration_seconds_gcount{" in body
    assert "htap_active_session_duration_seconds_gsum{" in body
    assert "# TYPE htap_active_session_duration_seconds_gcount" not in body
    assert "# EOF" not in body
    families = {f.name: f.type for f in parse_openmetrics(body + "# EOF\n")}
    assert families["htap_active_session_duration_seconds"] == "gaugehistogram"
    assert families["htap_poll_errors"] == "counter"


def test_store_generation_and_cached_render():
    identity = InstanceIdentity("af315b8e6aaa41799bd9a31f2de15abcin17", "a", "p", "r")
    store = make_store()
    assert store.generation == 0 and store.render() == b""
    store.put(identity.instance_id, render_instance(identity, PollState()))
    first = store.generation
    body = store.render()
    assert store.render() is body  # nothing changed: the same bytes, no new join
    store.put(identity.instance_id, render_instance(identity, PollState(up=True, stats=aggregate([], MetricsConfig()))))
    assert store.generation > first and store.render() != body
    before = store.generation
    store.remove("not-there")
    assert store.generation == before
    store.remove(identity.instance_id)
    assert store.generation > before and store.render() == b"" and store.render(openmetrics=True) == b""


def test_statuses_follow_every_put():
    a = InstanceIdentity("af315b8e6aaa41799bd9a31f2de15abcin17", "b-name", "p1", "cn-north-4")
    b = InstanceIdentity("0123456789abcdef0123456789abcdefin17", "a-name", "p1", "cn-north-4")
    store = make_store()
    store.put(a.instance_id, render_instance(a, PollState()))
    store.put(b.instance_id, render_instance(b, PollState(up=False, last_error_reason="timeout", last_success=5.0)))
    assert store.statuses() == [
        InstanceStatus(b.instance_id, "a-name", "p1", "cn-north-4", False, "timeout", 5.0, None),
        InstanceStatus(a.instance_id, "b-name", "p1", "cn-north-4", False, None, None, None),
    ]
    stats = aggregate([parse_session({"id": "1"}), parse_session({"id": "2"})], MetricsConfig())
    store.put(a.instance_id, render_instance(a, PollState(up=True, stats=stats, last_success=9.0,
                                                          last_error_reason=None)))
    assert store.statuses()[1] == InstanceStatus(a.instance_id, "b-name", "p1", "cn-north-4", True, None, 9.0, 2)


def test_self_metrics_have_no_created_series_in_either_format():
    metrics = SelfMetrics()
    metrics.observe_request("list_sessions", "200", 0.3)
    metrics.config_loaded(True, 1.0)
    text = metrics.render().decode()
    openmetrics = metrics.render(openmetrics=True).decode()
    assert "_created" not in text and "_created" not in openmetrics
    assert "# EOF" not in openmetrics
    assert "htap_api_requests_total{" in text and "htap_api_requests_total{" in openmetrics
    families = {f.name: f for f in parse_openmetrics(openmetrics + "# EOF\n")}
    assert families["htap_api_requests"].type == "counter"
    assert [s.value for s in families["htap_api_requests"].samples] == [1.0]


def test_store_and_self_metrics_together_parse_and_pass_promtool():
    """promtool (2.42) lints only the text format (it reads OpenMetrics counters as help-less); the
    OpenMetrics body is checked by prometheus_client's strict OpenMetrics parser instead."""
    identity = InstanceIdentity("af315b8e6aaa41799bd9a31f2de15abcin17", "a", "p", "r")
    state = PollState(up=True, stats=aggregate([parse_session({"id": "1", "duration": 3, "command": "Query"})],
                                               MetricsConfig(hosts=True)), poll_duration=1.0, last_success=2.0)
    metrics = SelfMetrics()
    metrics.observe_request("list_sessions", "200", 0.3)
    store = store_of([(identity, state)])
    body = store.render() + metrics.render()
    result = subprocess.run([promtool(), "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    openmetrics = (store.render(openmetrics=True) + metrics.render(openmetrics=True) + b"# EOF\n").decode()
    names = [family.name for family in parse_openmetrics(openmetrics)]
    assert len(names) == len(set(names))
    assert {"htap_up", "htap_api_requests", "htap_active_session_duration_seconds"} <= set(names)


@given(instance_states())
@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_promtool_accepts_random_states(items):
    body = store_of(items).render()
    result = subprocess.run([promtool(), "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), body[:2000]


def test_values_are_finite_and_identical_to_go_formatting():
    from htap_exporter.exposition.writer import number_text
    for value in (0, 1, 4095, 4096, 10**15, 10**16, 0.1, 1e-7, 123456789.0, 1700000000.25, 2.5e300):
        assert number_text(value) == floatToGoString(value)
        assert math.isfinite(float(number_text(value)))


@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.floats(-2e6, 2e6),
                 st.integers(-2 ** 60, 2 ** 60)))
def test_any_number_is_written_as_go_formats_it(value):
    from htap_exporter.exposition.writer import number_text
    assert number_text(value) == floatToGoString(value)
