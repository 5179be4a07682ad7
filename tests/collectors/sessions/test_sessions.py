"""htap_exporter/collectors/sessions/counting.py: rows -> Session -> InstanceStats, with exact numbers for every field."""

from __future__ import annotations

import math

import pytest

from htap_exporter.config import MetricsConfig
from htap_exporter.collectors.sessions.capping import cap_counts
from htap_exporter.collectors.sessions.counting import KNOWN_COMMANDS, KNOWN_STATES, InstanceStats, Session, aggregate, client_ip, parse_duration_value, parse_session
from htap_exporter.collectors.labels import OTHER, UNKNOWN, label_value

INF = math.inf


def stats_of(rows, **config) -> InstanceStats:
    return aggregate([parse_session(row) for row in rows], MetricsConfig(**config))


def row(**values):
    base = {"id": "1", "user": "app", "host": "10.0.0.1:5000", "state": "OK", "database": "orders",
            "command": "Query", "duration": 1}
    base.update(values)
    return {key: value for key, value in base.items() if value is not MISSING}


MISSING = object()

ROWS = [
    {"id": "1", "user": "app", "host": "10.0.0.1:5000", "state": "OK", "database": "orders",
     "command": "Query", "duration": 12, "sql_statement": "select * from t"},
    {"id": "2", "user": "app", "host": "10.0.0.1:5001", "state": "OK", "database": "orders",
     "command": "Query", "duration": "3.5"},
    {"id": "3", "user": "etl", "host": "[::1]:3306", "state": "EOF", "database": "sales",
     "command": "Sleep", "duration": 100.25},
    {"id": "4", "user": "bi", "host": "10.0.0.2", "state": "", "database": "  ",
     "command": "Daemon", "duration": "0"},
    {"id": "5", "user": "  app  ", "host": "10.0.0.3:1", "command": "Query", "duration": "soon"},
    {"id": "6", "user": None, "host": "", "state": "ERR", "database": "orders",
     "command": "Connect", "duration": 0.5},
]


def test_aggregate_every_field_exact():
    stats = stats_of(ROWS, max_users=2, max_databases=2, hosts=True, max_hosts=2,
                     idle_commands=frozenset({"Sleep", "Daemon"}), duration_buckets=(1, 5, 10))
    assert stats == InstanceStats(
        sessions=6,
        by_state={"OK": 2, "EOF": 1, "ERR": 1, "NOOP": 0, "unknown": 2},
        by_command={"Sleep": 1, "Query": 3, "Daemon": 1, "Connect": 1},
        # app 3; ties at 1 (bi, etl, unknown) broken by name: bi kept, etl + unknown folded
        by_user={"app": 3, "bi": 1, "__other__": 2},
        by_database={"orders": 3, "unknown": 2, "__other__": 1},
        by_host={"10.0.0.1": 2, "10.0.0.2": 1, "__other__": 3},
        max_duration_by_command={"Sleep": 100.25, "Query": 12.0, "Daemon": 0.0, "Connect": 0.5},
        # active = not Sleep/Daemon and with a duration: 12, 3.5, 0.5 (row 5's junk duration is out)
        active_buckets=((1, 1), (5, 2), (10, 2), (INF, 3)),
        active_sum=16.0,
        active_count=3,
        rows_without_duration=1,
    )
    # every field of InstanceStats is covered above
    assert set(InstanceStats._fields) == {
        "sessions", "by_state", "by_command", "by_user", "by_database", "by_host", "max_duration_by_command",
        "active_buckets", "active_sum", "active_count", "rows_without_duration"}


def test_no_sessions_still_exports_known_states_and_commands():
    stats = aggregate([], MetricsConfig())
    assert stats == InstanceStats(
        sessions=0,
        by_state={"OK": 0, "EOF": 0, "ERR": 0, "NOOP": 0},
        by_command={"Sleep": 0, "Query": 0},
        by_user={},
        by_database={},
        by_host=None,
        max_duration_by_command={"Sleep": 0.0, "Query": 0.0},
        active_buckets=((1, 0), (5, 0), (10, 0), (30, 0), (60, 0), (300, 0), (600, 0), (1800, 0), (3600, 0),
                        (INF, 0)),
        active_sum=0.0,
        active_count=0,
        rows_without_duration=0,
    )
    assert KNOWN_STATES == ("OK", "EOF", "ERR", "NOOP")
    assert KNOWN_COMMANDS == ("Sleep", "Query")


def test_known_values_present_alongside_others():
    stats = stats_of([row(state="NOOP", command="Daemon")])
    assert stats.by_state == {"OK": 0, "EOF": 0, "ERR": 0, "NOOP": 1}
    assert stats.by_command == {"Sleep": 0, "Query": 0, "Daemon": 1}


def test_hosts_disabled_means_no_host_counts():
    assert stats_of(ROWS, hosts=False).by_host is None
    assert stats_of([], hosts=True).by_host == {}


# --- caps ----------------------------------------------------------------------------------------


def test_cap_counts_at_the_cap_keeps_everything():
    assert cap_counts({"a": 1, "b": 5, "c": 2}, 3) == {"a": 1, "b": 5, "c": 2}
    assert cap_counts({}, 1) == {}


def test_cap_counts_over_the_cap_keeps_exactly_n_plus_other():
    counts = {"d": 1, "c": 7, "b": 3, "a": 3, "e": 2}
    assert cap_counts(counts, 1) == {"c": 7, OTHER: 9}
    assert cap_counts(counts, 2) == {"c": 7, "a": 3, OTHER: 6}
    assert cap_counts(counts, 3) == {"c": 7, "a": 3, "b": 3, OTHER: 3}
    assert cap_counts(counts, 4) == {"c": 7, "a": 3, "b": 3, "e": 2, OTHER: 1}
    assert cap_counts(counts, 5) == counts


def test_cap_counts_ties_broken_by_name():
    assert cap_counts({"zed": 2, "amy": 2, "bob": 2, "cat": 2}, 2) == {"amy": 2, "bob": 2, OTHER: 4}
    # same result whatever the insertion order
    assert cap_counts({"cat": 2, "bob": 2, "amy": 2, "zed": 2}, 2) == {"amy": 2, "bob": 2, OTHER: 4}


def test_cap_counts_with_a_real_label_named_other():
    assert cap_counts({OTHER: 5, "a": 1, "b": 1}, 1) == {OTHER: 7}
    assert cap_counts({"a": 9, OTHER: 1, "b": 1}, 1) == {"a": 9, OTHER: 2}


def users(*names):
    return [row(id=str(i), user=name) for i, name in enumerate(names)]


def test_users_at_the_cap_have_no_other():
    assert stats_of(users("x", "y", "z", "z"), max_users=3).by_user == {"x": 1, "y": 1, "z": 2}


def test_users_over_the_cap():
    stats = stats_of(users("x", "y", "z", "z", "w"), max_users=3)
    assert stats.by_user == {"z": 2, "w": 1, "x": 1, OTHER: 1}
    assert len(stats.by_user) == 4


def test_databases_and_hosts_capped_separately():
    rows = [row(id=str(i), database=f"db{i % 4}", host=f"10.0.0.{i % 3}:{1000 + i}") for i in range(12)]
    stats = stats_of(rows, max_databases=2, hosts=True, max_hosts=1, max_users=1)
    assert stats.by_database == {"db0": 3, "db1": 3, OTHER: 6}
    assert stats.by_host == {"10.0.0.0": 4, OTHER: 8}
    assert stats.by_user == {"app": 12}


# --- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (7, 7.0), (0, 0.0), (2.5, 2.5), ("42", 42.0), (" 3.25 ", 3.25), ("1e2", 100.0), ("0", 0.0),
])
def test_parse_duration_value(value, expected):
    assert parse_duration_value(value) == expected


@pytest.mark.parametrize("value", [
    "soon", "", "  ", "12s", None, True, False, [], {}, [5], -1, -0.5, "-3", "nan", "inf", "-inf",
    math.nan, math.inf, 10 ** 400, "1e400",
])
def test_parse_duration_value_junk(value):
    assert parse_duration_value(value) is None


@pytest.mark.parametrize("duration", [12, 12.0, "12", " 12.0 "])
def test_duration_as_int_float_or_string(duration):
    stats = stats_of([row(duration=duration)], duration_buckets=(10, 20))
    assert stats.max_duration_by_command == {"Sleep": 0.0, "Query": 12.0}
    assert (stats.active_buckets, stats.active_sum, stats.active_count) == (((10, 0), (20, 1), (INF, 1)), 12.0, 1)
    assert stats.rows_without_duration == 0


@pytest.mark.parametrize("duration", ["junk", None, MISSING, True, [1], {"s": 1}, -5, "NaN", 10 ** 400])
def test_junk_duration_counts_the_row_but_not_its_duration(duration):
    stats = stats_of([row(duration=duration, command="Query"), row(id="2", command="Query", duration=4)],
                     duration_buckets=(5,))
    assert stats.sessions == 2
    assert stats.by_command == {"Sleep": 0, "Query": 2}
    assert stats.by_user == {"app": 2}
    assert stats.by_state["OK"] == 2
    assert stats.max_duration_by_command == {"Sleep": 0.0, "Query": 4.0}
    assert stats.active_buckets == ((5, 1), (INF, 1))
    assert (stats.active_sum, stats.active_count, stats.rows_without_duration) == (4.0, 1, 1)


def test_command_without_any_duration_has_no_max():
    stats = stats_of([row(command="Connect", duration="junk")])
    assert stats.by_command == {"Sleep": 0, "Query": 0, "Connect": 1}
    assert stats.max_duration_by_command == {"Sleep": 0.0, "Query": 0.0}


def test_max_duration_per_command():
    rows = [row(id="a", command="Query", duration=3), row(id="b", command="Query", duration="30.5"),
            row(id="c", command="Query", duration=7), row(id="d", command="Sleep", duration=900),
            row(id="e", command="Sleep", duration=1000), row(id="f", command="Binlog Dump", duration=0),
            row(id="g", command="Daemon", duration=86400.75)]
    assert stats_of(rows).max_duration_by_command == {
        "Query": 30.5, "Sleep": 1000.0, "Binlog Dump": 0.0, "Daemon": 86400.75}


# --- the gauge histogram of active sessions ------------------------------------------------------


def test_histogram_buckets_are_cumulative_with_inf_sum_and_count():
    durations = [0, 0.5, 1, 1.5, 5, 5.000001, 9, 10, 11, 3600, 7200.5]
    rows = [row(id=str(i), duration=d) for i, d in enumerate(durations)]
    stats = stats_of(rows, duration_buckets=(1, 5, 10, 3600))
    # le semantics: a duration equal to a bound falls into that bound's bucket
    assert stats.active_buckets == ((1, 3), (5, 5), (10, 8), (3600, 10), (INF, 11))
    assert stats.active_count == 11
    assert stats.active_sum == pytest.approx(sum(durations), abs=1e-9)
    assert stats.active_sum == pytest.approx(10843.500001, abs=1e-9)


def test_idle_sessions_are_not_in_the_histogram():
    rows = [row(id="1", command="Sleep", duration=50), row(id="2", command="Daemon", duration=2),
            row(id="3", command="Query", duration=2), row(id="4", command="Binlog Dump", duration=70)]
    default = stats_of(rows, duration_buckets=(10, 60))
    assert (default.active_buckets, default.active_sum, default.active_count) == (
        ((10, 1), (60, 1), (INF, 2)), 72.0, 2)
    custom = stats_of(rows, duration_buckets=(10, 60), idle_commands=frozenset({"Binlog Dump", "Query"}))
    assert (custom.active_buckets, custom.active_sum, custom.active_count) == (
        ((10, 1), (60, 2), (INF, 2)), 52.0, 2)
    none_idle = stats_of(rows, duration_buckets=(10, 60), idle_commands=frozenset())
    assert (none_idle.active_buckets, none_idle.active_sum, none_idle.active_count) == (
        ((10, 2), (60, 3), (INF, 4)), 124.0, 4)
    # idle sessions still count everywhere else
    assert custom.sessions == 4
    assert custom.max_duration_by_command == {"Sleep": 50.0, "Query": 2.0, "Daemon": 2.0, "Binlog Dump": 70.0}


def test_idle_commands_match_exactly():
    stats = stats_of([row(command="sleep", duration=3)], duration_buckets=(5,))
    assert stats.active_buckets == ((5, 1), (INF, 1))
    assert stats.by_command == {"Sleep": 0, "Query": 0, "sleep": 1}


# --- label values --------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("OK", "OK"), ("  padded\t", "padded"), ("", UNKNOWN), ("   ", UNKNOWN), ("\n\t ", UNKNOWN), (None, UNKNOWN),
    (True, UNKNOWN), (False, UNKNOWN), ([], UNKNOWN), ({"a": 1}, UNKNOWN), (["x"], UNKNOWN),
    (42, "42"), (0, "0"), (-3, "-3"), (1.5, "1.5"), (math.nan, UNKNOWN), (math.inf, UNKNOWN),
    ('say "hi"\\', 'say "hi"\\'), ("a\nb", "a\ufffdb"), ("a\x00b\rc\x85d\u2028e", "a\ufffdb\ufffdc\ufffdd\ufffde"), ("数据库", "数据库"),
    ("bad\ud800surrogate", "bad?surrogate"),
])
def test_label_value(value, expected):
    assert label_value(value) == expected
    label_value(value).encode("utf-8")  # always encodable for the exposition


def test_parse_session_missing_and_empty_fields_become_unknown():
    assert parse_session({}) == Session(id=UNKNOWN, user=UNKNOWN, host=UNKNOWN, state=UNKNOWN,
                                        database=UNKNOWN, command=UNKNOWN, duration=None)
    assert parse_session({"id": "", "user": " ", "host": None, "state": "\t", "database": [],
                          "command": {}, "duration": ""}) == Session(
        id=UNKNOWN, user=UNKNOWN, host=UNKNOWN, state=UNKNOWN, database=UNKNOWN, command=UNKNOWN, duration=None)


def test_parse_session_trims_and_drops_sql():
    session = parse_session({"id": 17, "user": " root ", "host": " 10.1.2.3:4567 ", "state": "OK ",
                             "database": " sales", "command": "Query", "duration": "8",
                             "sql_statement": "select password from users", "extra": "ignored"})
    assert session == Session(id="17", user="root", host="10.1.2.3:4567", state="OK", database="sales",
                              command="Query", duration=8.0)
    assert "select" not in repr(session)
    assert not hasattr(session, "sql_statement")
    assert Session.__slots__ == ("id", "user", "host", "state", "database", "command", "duration")


def test_missing_strings_counted_as_unknown():
    stats = stats_of([{"duration": 1}, {"user": "", "database": " ", "state": None, "command": ""}], hosts=True)
    assert stats.sessions == 2
    assert stats.by_state == {"OK": 0, "EOF": 0, "ERR": 0, "NOOP": 0, UNKNOWN: 2}
    assert stats.by_command == {"Sleep": 0, "Query": 0, UNKNOWN: 2}
    assert stats.by_user == {UNKNOWN: 2}
    assert stats.by_database == {UNKNOWN: 2}
    assert stats.by_host == {UNKNOWN: 2}
    assert stats.max_duration_by_command == {"Sleep": 0.0, "Query": 0.0, UNKNOWN: 1.0}


# --- hosts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("host, expected", [
    ("10.0.0.1:3306", "10.0.0.1"),
    ("10.0.0.1", "10.0.0.1"),
    ("db.example.com:80", "db.example.com"),
    ("[::1]:3306", "::1"),
    ("[fe80::1%eth0]:50000", "fe80::1%eth0"),
    ("[::1]", "::1"),
    ("::1", "::1"),
    ("fe80::1:3306", "fe80::1:3306"),
    ("10.0.0.1:", "10.0.0.1:"),
    (":3306", ":3306"),
    ("10.0.0.1:port", "10.0.0.1:port"),
    ("[]:3306", "[]:3306"),
    ("[::1", "[::1"),
    ("unknown", "unknown"),
])
def test_client_ip(host, expected):
    assert client_ip(host) == expected


def test_host_counts_strip_ports():
    rows = [row(id="1", host="10.0.0.1:5000"), row(id="2", host="10.0.0.1:5001"),
            row(id="3", host="[::1]:3306"), row(id="4", host="[::1]:3307"), row(id="5", host="::1"),
            row(id="6", host=" 10.0.0.2:1 "), row(id="7", host=""), row(id="8", host=MISSING)]
    assert stats_of(rows, hosts=True).by_host == {"10.0.0.1": 2, "::1": 3, "10.0.0.2": 1, UNKNOWN: 2}


def test_a_server_inventing_commands_and_states_cannot_explode_cardinality() -> None:
    from htap_exporter.collectors.sessions.capping import MAX_ENUM_VALUES
    sessions = [Session(id=str(n), user="u", host="h", state=f"S{n}", database="d", command=f"C{n}",
                        duration=float(n)) for n in range(1000)]
    sessions.append(Session(id="q", user="u", host="h", state="OK", database="d", command="Query", duration=5.0))
    stats = aggregate(sessions, MetricsConfig())
    assert len(stats.by_command) == MAX_ENUM_VALUES + 1 and len(stats.by_state) == MAX_ENUM_VALUES + 1
    assert stats.by_command["Query"] == 1 and stats.by_command["Sleep"] == 0
    assert stats.by_state["OK"] == 1 and stats.by_state["NOOP"] == 0
    assert sum(stats.by_command.values()) == sum(stats.by_state.values()) == 1001
    assert set(stats.max_duration_by_command) <= set(stats.by_command)
    assert stats.max_duration_by_command[OTHER] == 999.0 and stats.max_duration_by_command["Query"] == 5.0
