"""htap_exporter/exposition/metrics.py + htap_exporter/exposition/store.py: the exposition as Prometheus parses it, exact samples."""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from htap_exporter import __version__, revision
from htap_exporter.config import MetricsConfig
from htap_exporter.exposition.writer import InstanceIdentity, number_text
from tests.fakes import make_store
from tests.fakes import PollState, render_instance
from htap_exporter.exposition.selfmetrics import SelfMetrics
from htap_exporter.collectors.labels import CONTROL_CHARACTERS
from htap_exporter.collectors.sessions.counting import aggregate, parse_session
from htap_exporter.exposition.store import Store
from htap_exporter.cloud.errors import REASONS

PID = "054e292c9880d4992f02c0196d3ea468"
A = InstanceIdentity("af315b8e6aaa41799bd9a31f2de15abcin17", "orders-htap", PID, "cn-north-4")
B = InstanceIdentity("0123456789abcdef0123456789abcdefin17", "0123456789abcdef0123456789abcdefin17", PID,
                     "ap-southeast-1")

ROWS_A = [
    {"id": "1", "user": "app", "host": "10.0.0.1:5000", "state": "OK", "database": "orders", "command": "Query",
     "duration": 12, "sql_statement": "select secret_column from t"},
    {"id": "2", "user": "etl", "host": "[::1]:3306", "state": "EOF", "database": "sales", "command": "Sleep",
     "duration": 100},
    {"id": "3", "user": "app", "host": "10.0.0.1:6000", "state": "OK", "database": "orders", "command": "Query",
     "duration": "0.5"},
]
CONFIG = MetricsConfig(hosts=True, duration_buckets=(1, 5, 10))
SESSION_FAMILIES = ("htap_sessions", "htap_sessions_by_state", "htap_sessions_by_command", "htap_sessions_by_user",
                    "htap_sessions_by_database", "htap_sessions_by_host", "htap_session_max_duration_seconds",
                    "htap_active_session_duration_seconds", "htap_active_session_duration_seconds_gcount",
                    "htap_active_session_duration_seconds_gsum")


def stats(rows, config=CONFIG):
    return aggregate([parse_session(row) for row in rows], config)


def state_a() -> PollState:
    return PollState(up=True, stats=stats(ROWS_A), poll_duration=0.25, last_success=1700000000.5,
                     errors={"auth": 0, "throttled": 1, "timeout": 2, "network": 0, "http": 0, "bad_response": 0},
                     skipped_ticks=3)


def state_b_failed() -> PollState:
    # stats left over from an earlier success must not be served once the poll failed
    return PollState(up=False, stats=stats(ROWS_A), poll_duration=10.0, last_success=1699999000.0,
                     errors={"auth": 0, "throttled": 0, "timeout": 0, "network": 0, "http": 3, "bad_response": 1},
                     skipped_ticks=0)


def self_metrics() -> SelfMetrics:
    metrics = SelfMetrics()
    metrics.observe_request("list_sessions", "200", 0.3)
    metrics.observe_request("list_sessions", "200", 7.0)
    metrics.observe_request("iam_token", "401", 0.05)
    metrics.config_loaded(True, 1700000001.0)
    return metrics


def two_instance_text() -> str:
    store = make_store()
    store.put(A.instance_id, render_instance(A, state_a()))
    store.put(B.instance_id, render_instance(B, state_b_failed()))
    return (store.render() + self_metrics().render()).decode("utf-8")


def families_of(text: str) -> dict:
    families = list(text_string_to_metric_families(text))
    names = [family.name for family in families]
    assert len(names) == len(set(names)), sorted(name for name in names if names.count(name) > 1)
    return {family.name: family for family in families}


def samples(families: dict, name: str) -> list:
    return sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in families[name].samples)


def labels(identity: InstanceIdentity, **extra: str) -> tuple:
    return tuple(sorted({"instance_id": identity.instance_id, "instance_name": identity.instance_name,
                         **extra}.items()))


def gauge(name: str, identity: InstanceIdentity, values: dict[str, float] | float, label: str | None = None) -> list:
    if label is None:
        return [(name, labels(identity), float(values))]
    return sorted((name, labels(identity, **{label: key}), float(value)) for key, value in values.items())


def assert_one_header_per_family(text: str) -> None:
    helps = [line.split(" ")[2] for line in text.split("\n") if line.startswith("# HELP ")]
    types = [line.split(" ")[2] for line in text.split("\n") if line.startswith("# TYPE ")]
    assert len(helps) == len(set(helps)), helps
    assert helps == types


# --- exact samples -------------------------------------------------------------------------------


def test_every_per_instance_metric_with_exact_samples():
    text = two_instance_text()
    families = families_of(text)
    assert_one_header_per_family(text)

    assert samples(families, "htap_up") == sorted(gauge("htap_up", A, 1) + gauge("htap_up", B, 0))
    assert samples(families, "htap_instance_info") == sorted([
        ("htap_instance_info", labels(A, project_id=PID, region="cn-north-4"), 1.0),
        ("htap_instance_info", labels(B, project_id=PID, region="ap-southeast-1"), 1.0),
    ])
    assert samples(families, "htap_sessions") == gauge("htap_sessions", A, 3)
    assert samples(families, "htap_sessions_by_state") == gauge(
        "htap_sessions_by_state", A, {"OK": 2, "EOF": 1, "ERR": 0, "NOOP": 0}, "state")
    assert samples(families, "htap_sessions_by_command") == gauge(
        "htap_sessions_by_command", A, {"Sleep": 1, "Query": 2}, "command")
    assert samples(families, "htap_sessions_by_user") == gauge(
        "htap_sessions_by_user", A, {"app": 2, "etl": 1}, "user")
    assert samples(families, "htap_sessions_by_database") == gauge(
        "htap_sessions_by_database", A, {"orders": 2, "sales": 1}, "database")
    assert samples(families, "htap_sessions_by_host") == gauge(
        "htap_sessions_by_host", A, {"10.0.0.1": 2, "::1": 1}, "host")
    assert samples(families, "htap_session_max_duration_seconds") == gauge(
        "htap_session_max_duration_seconds", A, {"Sleep": 100, "Query": 12}, "command")
    # non-idle sessions: 12 s and 0.5 s
    assert families["htap_active_session_duration_seconds"].type == "histogram"
    assert samples(families, "htap_active_session_duration_seconds") == sorted(
        ("htap_active_session_duration_seconds_bucket", labels(A, le=le), count)
        for le, count in (("1.0", 1.0), ("5.0", 1.0), ("10.0", 1.0), ("+Inf", 2.0)))
    assert samples(families, "htap_active_session_duration_seconds_gcount") == gauge(
        "htap_active_session_duration_seconds_gcount", A, 2)
    assert samples(families, "htap_active_session_duration_seconds_gsum") == gauge(
        "htap_active_session_duration_seconds_gsum", A, 12.5)
    assert samples(families, "htap_poll_duration_seconds") == sorted(
        gauge("htap_poll_duration_seconds", A, 0.25) + gauge("htap_poll_duration_seconds", B, 10.0))
    assert samples(families, "htap_last_poll_success_timestamp_seconds") == sorted(
        gauge("htap_last_poll_success_timestamp_seconds", A, 1700000000.5)
        + gauge("htap_last_poll_success_timestamp_seconds", B, 1699999000.0))
    assert families["htap_poll_errors"].type == "counter"
    assert samples(families, "htap_poll_errors") == sorted(
        gauge("htap_poll_errors_total", A, {"auth": 0, "throttled": 1, "timeout": 2, "network": 0, "http": 0,
                                            "bad_response": 0}, "reason")
        + gauge("htap_poll_errors_total", B, {"auth": 0, "throttled": 0, "timeout": 0, "network": 0, "http": 3,
                                              "bad_response": 1}, "reason"))
    assert samples(families, "htap_poll_skipped_ticks") == sorted(
        gauge("htap_poll_skipped_ticks_total", A, 3) + gauge("htap_poll_skipped_ticks_total", B, 0))
    assert "secret_column" not in text and "sql_statement" not in text


def test_every_family_exactly_once_with_its_type():
    text = two_instance_text()
    families = families_of(text)
    expected_types = {
        "htap_up": "gauge", "htap_instance_info": "gauge", "htap_sessions": "gauge",
        "htap_sessions_by_state": "gauge", "htap_sessions_by_command": "gauge", "htap_sessions_by_user": "gauge",
        "htap_sessions_by_database": "gauge", "htap_sessions_by_host": "gauge",
        "htap_session_max_duration_seconds": "gauge", "htap_active_session_duration_seconds": "histogram",
        "htap_active_session_duration_seconds_gcount": "gauge", "htap_active_session_duration_seconds_gsum": "gauge",
        "htap_poll_duration_seconds": "gauge", "htap_last_poll_success_timestamp_seconds": "gauge",
        "htap_poll_errors": "counter", "htap_poll_skipped_ticks": "counter",
        "htap_collector_success": "gauge", "htap_collector_last_success_timestamp_seconds": "gauge",
        "htap_collector_errors": "counter",
        "htap_exporter_build_info": "gauge", "htap_config_last_reload_successful": "gauge",
        "htap_config_last_reload_success_timestamp_seconds": "gauge", "htap_api_requests": "counter",
        "htap_api_request_duration_seconds": "histogram",
    }
    htap = {name: family.type for name, family in families.items() if name.startswith("htap_")}
    # counters' _created series come as separate gauges from prometheus_client
    htap.pop("htap_api_requests_created", None)
    htap.pop("htap_api_request_duration_seconds_created", None)
    assert htap == expected_types
    for name in ("htap_up", "htap_sessions", "htap_poll_errors_total", "htap_active_session_duration_seconds"):
        assert text.count(f"# HELP {name} ") == 1
        assert text.count(f"# TYPE {name} ") == 1
    # all samples of a family are contiguous, under their header
    lines = [line for line in text.split("\n") if line and not line.startswith("#")]
    up_lines = [i for i, line in enumerate(lines) if line.startswith("htap_up{")]
    assert up_lines == list(range(up_lines[0], up_lines[0] + 2))


def test_self_metrics_exact():
    families = families_of(self_metrics().render().decode())
    assert samples(families, "htap_exporter_build_info") == [
        ("htap_exporter_build_info", (("pythonversion", platform.python_version()), ("revision", revision()),
                                      ("version", __version__)), 1.0)]
    assert samples(families, "htap_config_last_reload_successful") == [
        ("htap_config_last_reload_successful", (), 1.0)]
    assert samples(families, "htap_config_last_reload_success_timestamp_seconds") == [
        ("htap_config_last_reload_success_timestamp_seconds", (), 1700000001.0)]
    assert samples(families, "htap_api_requests") == [
        ("htap_api_requests_total", (("api", "iam_token"), ("code", "401")), 1.0),
        ("htap_api_requests_total", (("api", "list_sessions"), ("code", "200")), 2.0),
    ]
    duration = {(s.name, s.labels.get("api"), s.labels.get("le")): s.value
                for s in families["htap_api_request_duration_seconds"].samples}
    bounds = ("0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "30.0", "+Inf")
    assert [duration[("htap_api_request_duration_seconds_bucket", "list_sessions", le)] for le in bounds] == [
        0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert [duration[("htap_api_request_duration_seconds_bucket", "iam_token", le)] for le in bounds] == [
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert duration[("htap_api_request_duration_seconds_count", "list_sessions", None)] == 2
    assert duration[("htap_api_request_duration_seconds_sum", "list_sessions", None)] == pytest.approx(7.3)


def test_failed_reload_sets_zero_and_keeps_timestamp():
    metrics = SelfMetrics()
    metrics.config_loaded(True, 100.0)
    metrics.config_loaded(False, 200.0)
    families = families_of(metrics.render().decode())
    assert samples(families, "htap_config_last_reload_successful") == [
        ("htap_config_last_reload_successful", (), 0.0)]
    assert samples(families, "htap_config_last_reload_success_timestamp_seconds") == [
        ("htap_config_last_reload_success_timestamp_seconds", (), 100.0)]


def test_self_metrics_registries_are_independent():
    first, second = SelfMetrics(), SelfMetrics()
    first.observe_request("list_sessions", "200", 1.0)
    assert "htap_api_requests_total{" not in second.render().decode()


# --- failed polls --------------------------------------------------------------------------------


def test_failed_poll_drops_session_series_but_keeps_up_errors_and_last_success():
    text = two_instance_text()
    families = families_of(text)
    for name in SESSION_FAMILIES:
        assert all(dict(s.labels)["instance_id"] == A.instance_id for s in families[name].samples), name
    b_samples = sorted((s.name, s.value) for family in families.values() for s in family.samples
                       if s.labels.get("instance_id") == B.instance_id)
    assert b_samples == sorted([
        ("htap_up", 0.0), ("htap_instance_info", 1.0), ("htap_poll_duration_seconds", 10.0),
        ("htap_last_poll_success_timestamp_seconds", 1699999000.0), ("htap_poll_skipped_ticks_total", 0.0),
        *(("htap_poll_errors_total", value) for value in (0.0, 0.0, 0.0, 0.0, 3.0, 1.0)),
        ("htap_collector_success", 0.0), ("htap_collector_last_success_timestamp_seconds", 1699999000.0),
        *(("htap_collector_errors_total", value) for value in (0.0, 0.0, 0.0, 0.0, 3.0, 1.0)),
    ])


def test_only_failed_instances_leave_no_session_headers():
    store = make_store()
    store.put(B.instance_id, render_instance(B, state_b_failed()))
    text = store.render().decode()
    families = families_of(text)
    assert set(families) == {"htap_up", "htap_instance_info", "htap_poll_duration_seconds",
                             "htap_last_poll_success_timestamp_seconds", "htap_poll_errors",
                             "htap_poll_skipped_ticks", "htap_collector_success",
                             "htap_collector_last_success_timestamp_seconds", "htap_collector_errors"}
    assert "htap_sessions" not in text


def test_never_polled_instance_exports_all_reasons_at_zero():
    text = render_and_join([(B, PollState())])
    families = families_of(text)
    assert set(families) == {"htap_up", "htap_instance_info", "htap_poll_errors", "htap_poll_skipped_ticks",
                             "htap_collector_success", "htap_collector_errors"}
    assert samples(families, "htap_up") == gauge("htap_up", B, 0)
    assert sorted(samples(families, "htap_collector_errors")) == sorted(
        ("htap_collector_errors_total", (("collector", "sessions"), ("instance_id", B.instance_id),
                                         ("instance_name", B.instance_name), ("reason", reason)), 0.0)
        for reason in REASONS)
    assert samples(families, "htap_poll_errors") == gauge("htap_poll_errors_total", B,
                                                          {reason: 0 for reason in REASONS}, "reason")
    assert REASONS == ("auth", "throttled", "timeout", "network", "http", "bad_response")


def test_a_poll_that_fails_after_a_success_replaces_the_block():
    store = make_store()
    store.put(A.instance_id, render_instance(A, state_a()))
    store.put(B.instance_id, render_instance(B, PollState(up=True, stats=stats([]), poll_duration=1.0,
                                                          last_success=5.0)))
    failed = state_a()
    failed.up = False
    failed.errors["network"] = 1
    store.put(A.instance_id, render_instance(A, failed))
    families = families_of(store.render().decode())
    assert samples(families, "htap_up") == sorted(gauge("htap_up", A, 0) + gauge("htap_up", B, 1))
    assert samples(families, "htap_sessions") == gauge("htap_sessions", B, 0)
    assert samples(families, "htap_sessions_by_user") == []  # B has no users, A's are gone
    assert samples(families, "htap_sessions_by_host") == []
    assert samples(families, "htap_sessions_by_state") == gauge(
        "htap_sessions_by_state", B, {"OK": 0, "EOF": 0, "ERR": 0, "NOOP": 0}, "state")
    assert samples(families, "htap_last_poll_success_timestamp_seconds") == sorted(
        gauge("htap_last_poll_success_timestamp_seconds", A, 1700000000.5)
        + gauge("htap_last_poll_success_timestamp_seconds", B, 5.0))
    assert ("htap_poll_errors_total", labels(A, reason="network"), 1.0) in samples(families, "htap_poll_errors")


def test_store_remove_and_keys():
    store = make_store()
    store.put(A.instance_id, render_instance(A, state_a()))
    store.put(B.instance_id, render_instance(B, state_b_failed()))
    assert store.keys() == {A.instance_id, B.instance_id}
    store.remove(A.instance_id)
    store.remove("not-there")
    assert store.keys() == {B.instance_id}
    text = store.render().decode()
    assert A.instance_id not in text
    assert "htap_sessions" not in text
    store.remove(B.instance_id)
    assert store.render() == b""


# --- label escaping ------------------------------------------------------------------------------

NASTY = ['say "hi"', "back\\slash", "new\nline", "# HELP htap_up fake", "x\r# HELP evil y\r# TYPE evil counter",
         '\\"\n# TYPE htap_sessions counter\n', "tab\there", "数据库", "end\\"]


def render_and_join(items) -> str:
    store = make_store()
    for identity, state in items:
        store.put(identity.instance_id, render_instance(identity, state))
    return store.render().decode("utf-8")


def nasty_text() -> str:
    rows = [{"id": str(i), "user": value, "database": value, "host": value, "state": value, "command": value,
             "duration": i} for i, value in enumerate(NASTY)]
    nasty_a = InstanceIdentity(A.instance_id, 'orders "prod" \\ main\n# HELP htap_up x', PID, "cn-north-4")
    config = MetricsConfig(hosts=True, max_users=100, max_databases=100, max_hosts=100, idle_commands=frozenset())
    state = PollState(up=True, stats=stats(rows, config), poll_duration=1.0, last_success=2.0)
    # B first and A second, so that a broken split would put A's pieces under the wrong header
    return render_and_join([(B, PollState(up=True, stats=stats(ROWS_A), poll_duration=1.0, last_success=2.0)),
                            (nasty_a, state)])


def test_label_values_survive_a_round_trip():
    text = nasty_text()
    assert_one_header_per_family(text)
    families = families_of(text)
    assert "evil" not in families
    assert families["htap_up"].type == "gauge" and families["htap_sessions"].type == "gauge"
    # Trimmed, control characters (the line feed, CR and tab here) replaced by U+FFFD.
    expected = {CONTROL_CHARACTERS.sub("\ufffd", value.strip()): 1.0 for value in NASTY}
    assert "new\ufffdline" in expected and "x\ufffd# HELP evil y\ufffd# TYPE evil counter" in expected
    for name, label in (("htap_sessions_by_user", "user"), ("htap_sessions_by_database", "database"),
                        ("htap_sessions_by_state", "state"), ("htap_sessions_by_command", "command"),
                        ("htap_sessions_by_host", "host")):
        got = {s.labels[label]: s.value for s in families[name].samples
               if s.labels["instance_id"] == A.instance_id and s.value}
        assert got == expected, name
        assert {s.labels["instance_name"] for s in families[name].samples} == {
            'orders "prod" \\ main\n# HELP htap_up x', B.instance_name}
    assert {s.labels["instance_name"]: s.value for s in families["htap_up"].samples} == {
        'orders "prod" \\ main\n# HELP htap_up x': 1.0, B.instance_name: 1.0}
    assert samples(families, "htap_sessions") == sorted(
        [("htap_sessions", labels(B), 3.0),
         ("htap_sessions", (("instance_id", A.instance_id),
                            ("instance_name", 'orders "prod" \\ main\n# HELP htap_up x')), float(len(NASTY)))])


def test_lines_of_values_in_text_are_those_of_the_numbers_run_after_run():
    """by_label_text keeps each line's text up to its value between runs: the lines are still those
    by_label writes for the same numbers, whatever the label values hold, as the values change."""
    identity = InstanceIdentity("id-1", 'orders "prod" \\ main\n\u2028x', "p", "r")
    writer = identity.writer
    for label in ("collector", "reason"):  # sorted before and after instance_id
        for stamps in ({"sessions": 1.5e9, 'top "x"\\\n\u2028': 1.25e9}, {"sessions": 1.75e9}, {"sessions": 2.0e9},
                       {'top "x"\\\n\u2028': 7.0, "sessions": 8.0}):
            texts = {key: number_text(value) for key, value in stamps.items()}
            fresh = InstanceIdentity(identity.instance_id, identity.instance_name, "p", "r").writer
            assert writer.by_label_text("htap_x", label, texts) == fresh.by_label("htap_x", label, stamps)


def test_lone_surrogates_from_json_do_not_break_rendering():
    text = render_and_join([(A, PollState(up=True, stats=stats([{"user": "a\ud800b", "duration": 1}])))])
    families = families_of(text)
    assert [s.labels["user"] for s in families["htap_sessions_by_user"].samples] == ["a?b"]


# --- promtool ------------------------------------------------------------------------------------


def promtool() -> str:
    path = shutil.which("promtool") or ("/usr/bin/promtool" if os.path.exists("/usr/bin/promtool") else None)
    if path is None:
        if os.environ.get("HTAP_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool is required (HTAP_REQUIRE_PROMTOOL=1) but was not found")
        pytest.skip("promtool not installed")
    return path


@pytest.mark.parametrize("make_text", [
    two_instance_text,
    nasty_text,
    lambda: render_and_join([(B, state_b_failed())]),
    lambda: render_and_join([(B, PollState())]) + self_metrics().render().decode(),
], ids=["two-instances", "nasty-labels", "failed-only", "never-polled"])
def test_promtool_accepts_the_output(make_text):
    result = subprocess.run([promtool(), "check", "metrics"], input=make_text().encode("utf-8"),
                            capture_output=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_promtool_would_catch_a_broken_exposition():
    """The check above can fail: a family split under two headers is rejected."""
    broken = ("# HELP a x\n# TYPE a gauge\na{b=\"1\"} 1\n# HELP c y\n# TYPE c gauge\nc 1\n"
              "# HELP a x\n# TYPE a gauge\na{b=\"2\"} 1\n")
    result = subprocess.run([promtool(), "check", "metrics"], input=broken.encode(), capture_output=True, timeout=30)
    assert result.returncode != 0


def test_no_nan_or_inf_values():
    for family in families_of(two_instance_text()).values():
        for sample in family.samples:
            assert math.isfinite(sample.value), sample
