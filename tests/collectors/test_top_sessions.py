"""The top sessions: a bounded selection over streamed pages, and its samples."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from htap_exporter.collectors.sessions.counting import SessionCounter
from htap_exporter.collectors.sessions.pages import decode_page, page_of
from htap_exporter.config import MetricsConfig
from htap_exporter.collectors import sql_text, top_sessions
from htap_exporter.collectors.top_sessions import FingerprintCache, TopSessions, top_session_samples
from tests.examples import examples
from tests.fakes import FixedBodyTransport, fixed_body_client

SETTINGS = settings(deadline=None, max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
IDLE = frozenset({"Sleep", "Daemon"})


def row(id, duration, command="Query", **fields):
    values = {"user": "app", "host": "10.0.0.1:5000", "state": "OK", "database": "orders",
              "sql_statement": None}
    values.update(fields)
    return SimpleNamespace(id=id, duration=duration, command=command, **values)


durations = st.one_of(st.integers(0, 300), st.sampled_from([60, 60.0, 61.5]), st.none(), st.just("90"),
                      st.just("x"), st.just(-1), st.just(True), st.just(float("nan")), st.just(float("inf")),
                      st.just(10 ** 400), st.floats(min_value=1e300, max_value=1.7e308))
commands = st.sampled_from(["Query", "Sleep", "Daemon", " Sleep ", "Execute", None, 7])


@st.composite
def polls(draw):
    """Pages of rows with distinct ids (some rows without one), cut at random places."""
    count = draw(st.integers(0, 60))
    ids = draw(st.lists(st.integers(0, 10 ** 6), min_size=count, max_size=count, unique=True))
    rows = [row(None if draw(st.integers(0, 9)) == 0 else str(number), draw(durations), draw(commands))
            for number in ids]
    cuts = sorted(draw(st.lists(st.integers(0, len(rows)), max_size=4)))
    bounds = [0, *cuts, len(rows)]
    return rows, [rows[start:end] for start, end in zip(bounds, bounds[1:])]


def stream(top, pages):
    """Pages through the session counter, which hands the top sessions their rows (as a poll does)."""
    counter = SessionCounter(MetricsConfig(idle_commands=IDLE), active_rows=top)
    for page in pages:
        counter.add(page_of([vars(one) for one in page], with_sql=True))
        assert len(top) <= top.count
    return top


def selected_rows(top):
    return top.selected()[0]


def seen(rows):
    return [(one.id, one.duration, one.command) for one in rows]


def reference(rows, count, min_duration):
    """The eligible rows sorted whole: longest first, then the smaller id, then the earlier. A row
    without an id is never eligible: it could not be named, and two would be one series twice."""
    eligible = []
    for order, one in enumerate(rows):
        seconds = top_sessions.parse_duration_value(one.duration)
        command = top_sessions.label_value(one.command)
        if one.id is not None and seconds is not None and seconds >= min_duration and command not in IDLE:
            eligible.append((-seconds, top_sessions.label_value(one.id, 1 << 31), order, one))
    return [item[3] for item in sorted(eligible, key=lambda item: item[:3])[:count]]


@SETTINGS
@given(poll=polls(), count=st.integers(1, 20), min_duration=st.sampled_from([0, 1, 60, 61.5]),
       per_row=st.booleans())
def test_the_selection_is_exactly_the_longest_eligible_rows(poll, count, min_duration, per_row):
    rows, pages = poll
    top = TopSessions(count, min_duration, IDLE)
    if per_row:
        for one in rows:
            top.offer(one)
            assert len(top) <= count
    else:
        stream(top, pages)
    selected = selected_rows(top)
    assert len(selected) <= count
    assert top.selected() == (selected, [top_sessions.parse_duration_value(one.duration) for one in selected])
    assert seen(selected) == seen(reference(rows, count, min_duration))
    assert all(top_sessions.label_value(one.command) not in IDLE for one in selected)


@SETTINGS
@given(polls_in_a_row=st.lists(polls(), min_size=1, max_size=4), count=st.integers(1, 5))
def test_under_churn_each_poll_has_at_most_count_series_and_only_its_own(polls_in_a_row, count):
    """A new selection each poll: a session that left the top (or the list) is gone at once."""
    for rows, pages in polls_in_a_row:
        top = stream(TopSessions(count, 60, IDLE), pages)
        samples = top_session_samples(selected_rows(top), sql_mode="none", hosts=False, max_label_length=128)
        assert len(samples) <= count
        assert [labels["session_id"] for labels, _ in samples] == [
            top_sessions.label_value(one.id) for one in reference(rows, count, 60)]


def test_a_row_seen_on_two_pages_is_selected_once():
    top = stream(TopSessions(3, 0, IDLE), [[row("1", 100), row("2", 50)], [row("1", 101), row("3", 10)]])
    assert [(one.id, one.duration) for one in selected_rows(top)] == [("1", 100), ("2", 50), ("3", 10)]


def test_two_ids_that_clean_to_one_label_are_one_series():
    """Ids differing only in what cleaning replaces (control characters) are one label: the first
    taken keeps it, on one page or across two, and the others still enter."""
    for pages in ([[row("a\tb", 100), row("a\nb", 200), row("c", 50)]],
                  [[row("a\tb", 100)], [row("a\nb", 200), row("c", 50)]]):
        top = stream(TopSessions(3, 0, IDLE), pages)
        assert [(one.id, one.duration) for one in selected_rows(top)] == [("a\tb", 100), ("c", 50)]
        samples = top_session_samples(selected_rows(top), sql_mode="none", hosts=False, max_label_length=128)
        assert [labels["session_id"] for labels, _ in samples] == ["a\ufffdb", "c"]


def test_the_counter_hands_over_only_commands_that_reach_the_floor():
    """Once the selection is full, a command whose longest row is shorter than its shortest is not
    handed over at all; one that reaches it is, whole (the selection narrows it itself)."""

    class Rider:
        floor = 0.0

        def __init__(self):
            self.seen = []

        def offer_active(self, rows, durations, ordered=None):
            self.seen.append(sorted(one.id for one in rows))
            # What the histogram sorted: the same durations from the floor up.
            assert ordered is None or ([one for one in ordered if one >= self.floor]
                                       == sorted(one for one in durations if one >= self.floor))

    rider = Rider()
    counter = SessionCounter(MetricsConfig(idle_commands=IDLE), active_rows=rider)
    page = [row("1", 500, "Query"), row("2", 30, "Execute"), row("3", 40, "Execute"), row("4", 900, "Sleep")]
    counter.add(page_of([vars(one) for one in page]))
    assert rider.seen == [["1", "2", "3"]]  # idle commands never
    rider.floor = 100.0
    later = [row("5", 99, "Execute"), row("6", 100, "Query"), row("7", 5, "Query")]
    counter.add(page_of([vars(one) for one in later]))
    assert rider.seen[1:] == [["6", "7"]]
    rider.floor = 1000.0
    counter.add(page_of([vars(row("8", 999, "Query"))]))
    assert len(rider.seen) == 2
    assert counter.result().max_duration_by_command["Query"] == 999.0  # counted all the same


def test_ties_are_broken_by_session_id_whatever_the_order():
    rows = [row(str(number), 70) for number in (5, 3, 9, 1)]
    for ordered in (rows, rows[::-1]):
        top = stream(TopSessions(2, 60, IDLE), [ordered])
        assert [one.id for one in selected_rows(top)] == ["1", "3"]


def test_count_must_be_positive():
    with pytest.raises(ValueError):
        TopSessions(0, 60, IDLE)


class Unreadable:
    """A row whose statement must not be read."""

    id, user, host, state, database, command, duration = "7", "u", "h", "OK", "d", "Query", 90

    @property
    def sql_statement(self):
        raise AssertionError("sql_statement was read")


def test_samples_without_sql_never_read_the_statement():
    samples = top_session_samples([Unreadable()], sql_mode="none", hosts=False, max_label_length=128)
    assert samples == [({"session_id": "7", "user": "u", "database": "d", "command": "Query", "state": "OK"}, 90.0)]


def test_samples_with_hosts_digest_and_fingerprint():
    statement = "SELECT * FROM t WHERE secret = 'hunter2' AND n IN (1, 2, 3)"
    rows = [row("12", 300, host="[fe80::1]:33060", user=" ", database=None, state="Sending\ndata",
                sql_statement=statement),
            row("13", 200, sql_statement=statement.replace("hunter2", "other").replace("1, 2, 3", "4")),
            row("14", 100, sql_statement=None)]
    cache = FingerprintCache()
    for fingerprints in (None, cache, cache):
        samples = top_session_samples(rows, sql_mode="fingerprint", hosts=True, max_label_length=40,
                                      fingerprints=fingerprints)
        first, second, third = (labels for labels, _ in samples)
        assert [value for _, value in samples] == [300.0, 200.0, 100.0]
        assert first["host"] == "fe80::1" and first["user"] == "unknown" and first["database"] == "unknown"
        assert first["state"] == "Sending\ufffddata"
        assert first["sql_digest"] == second["sql_digest"] == sql_text.digest(sql_text.normalise(statement))
        assert first["sql_fingerprint"] == second["sql_fingerprint"] == sql_text.fingerprint(statement, 40)
        assert len(first["sql_fingerprint"]) <= 40 and "hunter2" not in repr(samples)
        assert third["sql_digest"] == third["sql_fingerprint"] == "unknown"
    digest_only = top_session_samples(rows, sql_mode="digest", hosts=False, max_label_length=40)
    assert sorted(digest_only[0][0]) == ["command", "database", "session_id", "sql_digest", "state", "user"]


def test_an_unknown_sql_mode_is_refused():
    with pytest.raises(ValueError):
        top_session_samples([], sql_mode="text", hosts=False, max_label_length=128)  # type: ignore[arg-type]


def test_rows_of_a_page_decoded_with_statements_are_selected_and_fingerprinted():
    body = json.dumps({"process_list": [
        {"id": "1", "user": "u", "command": "Query", "duration": 120, "sql_statement": "select 'a'"},
        {"id": "2", "user": "u", "command": "Sleep", "duration": 9000, "sql_statement": None},
        {"id": "3", "user": "u", "command": "Query", "duration": "75", "sql_statement": "select 42"},
    ]}).encode()
    page = decode_page(body, with_sql=True)
    top = TopSessions(5, 60, IDLE)
    counter = SessionCounter(MetricsConfig(idle_commands=IDLE), active_rows=top)
    counter.add(page)
    samples = top_session_samples(selected_rows(top), sql_mode="digest", hosts=False, max_label_length=128)
    assert [(labels["session_id"], labels["sql_digest"], value) for labels, value in samples] == [
        ("1", sql_text.digest("SELECT ?"), 120.0), ("3", sql_text.digest("SELECT ?"), 75.0)]


def test_sessions_without_an_id_never_enter():
    """Four id-less sessions alike would be four samples with one label set (a duplicate series)."""
    selector = stream(top_sessions.TopSessions(5, 0, IDLE),
                      [[row(None, 100 + n, "Query") for n in range(4)] + [row("", 50, "Query"), row("7", 10, "Query")]])
    assert [one.id for one in selected_rows(selector)] == ["7"]


def _selected(rows):
    """Rows and their durations, as TopSessions.selected gives them."""
    return rows, [float(row.duration) for row in rows]


def test_lines_are_the_writers_and_a_session_seen_again_reuses_its_labels():
    from htap_exporter.exposition.writer import InstanceIdentity

    writer = InstanceIdentity("i1", "orders-htap", "p", "r").writer
    lines = top_sessions.TopSessionLines("htap_top_session_duration_seconds", sql_mode="digest", hosts=True,
                                         max_label_length=128)
    body = json.dumps({"process_list": [
        {"id": "1", "user": "u", "host": "10.0.0.9:5000", "command": "Query", "duration": 120, "state": "OK",
         "database": 'd"b', "sql_statement": "select 'secret'"},
        {"id": "2", "user": "u", "command": "Query", "duration": 4100.5, "sql_statement": None}]}).encode()
    rows = decode_page(body, with_sql=True).rows
    samples, text = lines.render(writer, *_selected(rows))
    expected = top_session_samples(rows, sql_mode="digest", hosts=True, max_label_length=128)
    assert list(samples) == expected
    assert text == writer.samples("htap_top_session_duration_seconds", expected)
    assert b"secret" not in text
    # The next poll: the same sessions, longer; their label sets are the ones made before.
    later = decode_page(body.replace(b"120", b"125"), with_sql=True).rows
    again, text = lines.render(writer, *_selected(later))
    assert [value for _, value in again] == [125.0, 4100.5]
    assert all(new[0] is old[0] for new, old in zip(again, samples))
    assert text == writer.samples("htap_top_session_duration_seconds", list(again))
    # Another statement is another digest, however alike the rest of the row.
    other = decode_page(body.replace(b"select 'secret'", b"update t set a = 1"), with_sql=True).rows
    changed, _ = lines.render(writer, *_selected(other))
    assert changed[0][0]["sql_digest"] != samples[0][0]["sql_digest"] and changed[1][0] is again[1][0]
    lines.retain(set())
    assert lines.render(writer, *_selected(rows))[0][0][0] is not samples[0][0]


label_texts = st.sampled_from(["u", "app%s", "100%", "%r%%", 'd"b', "a\\b", "ü", None, ""])
seconds = st.one_of(st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False),
                    st.integers(0, 2 ** 40).map(float), st.sampled_from([0.0, 4095.0, 4096.0, 999999.5, 1e6]))


@SETTINGS
@given(polls_in_a_row=st.lists(
    st.lists(st.tuples(st.sampled_from(["1", "2", "3", "4"]), label_texts, label_texts, seconds), max_size=4,
             unique_by=lambda one: one[0]), min_size=1, max_size=5))
def test_lines_equal_the_writers_poll_after_poll(polls_in_a_row):
    """Whether a poll's lines are the last poll's template filled in or made afresh, they are what
    the writer makes of the samples: label values with % or quotes, durations of every size."""
    from htap_exporter.exposition.writer import InstanceIdentity

    writer = InstanceIdentity("i1", "orders-htap", "p", "r").writer
    lines = top_sessions.TopSessionLines("htap_top_session_duration_seconds", sql_mode="none", hosts=False,
                                         max_label_length=128)
    for selection in polls_in_a_row:
        rows = [row(id, duration, "Query", user=user, database=database)
                for id, user, database, duration in selection]
        samples, text = lines.render(writer, rows, [one.duration for one in rows])
        expected = top_session_samples(rows, sql_mode="none", hosts=False, max_label_length=128)
        assert list(samples) == expected
        assert text == writer.samples("htap_top_session_duration_seconds", expected)


def test_raw_values_equal_in_python_but_not_as_labels_are_never_taken_for_each_other():
    """True == 1 == 1.0, but they are three labels: a session whose user went from one to the other
    gets the new label, whether the last poll's lines are reused or made again; with a value msgpack
    cannot write (an integer beyond 64 bits) the lines are written again."""
    from htap_exporter.exposition.writer import InstanceIdentity

    writer = InstanceIdentity("i1", "orders-htap", "p", "r").writer
    lines = top_sessions.TopSessionLines("htap_top_session_duration_seconds", sql_mode="none", hosts=False,
                                         max_label_length=128)
    users = [True, 1, 1.0, 10 ** 30, 10 ** 30, "app"]
    for seconds, user in enumerate(users, 100):
        rows = [row("1", float(seconds), "Query", user=user), row("2", 50.0, "Query", user=True)]
        samples, text = lines.render(writer, rows, [one.duration for one in rows])
        expected = top_session_samples(rows, sql_mode="none", hosts=False, max_label_length=128)
        assert list(samples) == expected
        assert text == writer.samples("htap_top_session_duration_seconds", expected)


def test_the_tokenizer_is_imported_only_where_statements_are_read():
    """sqlglot costs ~0.2 s of every start: the exporter's CLI and `sql: none` never import it, and
    `sql: digest` imports it when its lines are set up, before any poll."""
    script = "\n".join([
        "import sys",
        "import htap_exporter.cli",
        "from htap_exporter.collectors.top_sessions import TopSessionLines",
        "assert 'sqlglot' not in sys.modules",
        "TopSessionLines('f', sql_mode='none', hosts=False, max_label_length=128)",
        "assert 'sqlglot' not in sys.modules",
        "TopSessionLines('f', sql_mode='digest', hosts=False, max_label_length=128)",
        "assert 'sqlglot' in sys.modules",
    ])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


async def test_the_collector_rides_its_poll_and_a_poll_without_long_sessions_shares_one_empty_output():
    from htap_exporter.collectors.labels import LabelCache
    from htap_exporter.collectors.sessions.collector import NO_TOP_SESSIONS, SessionsCollector
    from htap_exporter.config import TopSessionsConfig
    from htap_exporter.exposition.writer import InstanceIdentity

    metrics = MetricsConfig()
    collector = SessionsCollector(metrics, 5.0, LabelCache(metrics.max_label_length),
                                  TopSessionsConfig(enabled=True, count=2, min_duration=60.0))
    identity = InstanceIdentity("i1", "orders-htap", "p", "r")
    # A full page, answered again for the next offset: that page adds no new id and ends the walk.
    long_ones = [{"id": str(number), "user": "app", "command": "Query", "state": "OK", "database": "orders",
                  "duration": number * 50} for number in range(1, 100)]
    long_ones += [{"id": "x", "user": "app", "command": "Sleep", "duration": 99999}]
    transport = FixedBodyTransport(json.dumps({"process_list": long_ones}).encode())
    client = fixed_body_client(transport, max_pages=10)
    output = await collector.collect(identity, client)
    assert [(labels["session_id"], seconds) for labels, seconds in output.top_sessions] == [("99", 4950.0),
                                                                                            ("98", 4900.0)]
    text = output.riders["top_sessions"].samples["htap_top_session_duration_seconds"].decode()
    assert text.count("\n") == 2 and 'session_id="99"' in text and "4950.0" in text
    transport.body = json.dumps({"process_list": [{"id": "1", "command": "Query", "duration": 59},
                                                  {"id": "2", "command": "Sleep", "duration": 999}]}).encode()
    for _ in range(2):
        output = await collector.collect(identity, client)
        assert output.top_sessions == () and output.riders is NO_TOP_SESSIONS
        assert output.riders["top_sessions"].samples == {}
