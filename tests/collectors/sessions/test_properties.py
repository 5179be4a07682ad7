"""Property tests: whatever the API sends, parsing, aggregation, rendering and page validation never
raise anything but a `bad_response` ApiError, and the aggregate's invariants hold."""

from __future__ import annotations

import asyncio
import json
import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from htap_exporter.collectors.sessions.fetch import list_sessions
from htap_exporter.cloud.paging import PAGE_LIMIT
from htap_exporter.collectors.sessions.fetch import SessionList
from htap_exporter.config import MetricsConfig
from htap_exporter.exposition.writer import InstanceIdentity
from tests.examples import examples
from tests.fakes import FixedBodyTransport, fixed_body_client, make_store
from tests.fakes import PollState, render_instance
from htap_exporter.collectors.sessions.counting import KNOWN_COMMANDS, KNOWN_STATES, aggregate, parse_session
from htap_exporter.collectors.labels import OTHER
from htap_exporter.exposition.store import Store
from htap_exporter.cloud.transport import ApiError

SETTINGS = settings(derandomize=True, deadline=None, max_examples=examples(300), database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FIELDS = ("id", "user", "host", "state", "database", "command", "duration", "sql_statement")

# Any text, lone surrogates included (JSON's \ud800 escapes produce them).
any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=12)
json_leaf = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=10 ** 300, max_value=10 ** 400), st.integers(max_value=-1),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
json_value = st.recursive(json_leaf, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(any_text, children, max_size=3)), max_leaves=6)
# Values that look like what the API sends, so that caps, states and histograms see real traffic.
plausible = st.one_of(
    st.sampled_from(["OK", "EOF", "ERR", "NOOP", "Sleep", "Query", "Daemon", "root", "app", "orders", " ", "",
                     "10.0.0.1:3306", "[::1]:3306", "::1", "__other__", "unknown", "  padded  "]),
    st.floats(min_value=0, max_value=1e5).map(str),
    st.integers(min_value=-5, max_value=5000).map(str),
    st.integers(min_value=0, max_value=5000),
    st.floats(min_value=0, max_value=1e5),
)
field_value = st.one_of(plausible, plausible, json_value)
row = st.fixed_dictionaries({}, optional={name: field_value for name in FIELDS}).flatmap(
    lambda fixed: st.dictionaries(any_text, json_value, max_size=2).map(lambda extra: {**extra, **fixed}))
items = st.lists(st.one_of(row, row, row, json_value), max_size=40)


@st.composite
def metrics_configs(draw) -> MetricsConfig:
    buckets = draw(st.lists(st.floats(min_value=0, max_value=1e5), min_size=1, max_size=6, unique=True))
    return MetricsConfig(
        max_users=draw(st.integers(1, 5)),
        max_databases=draw(st.integers(1, 5)),
        hosts=draw(st.booleans()),
        max_hosts=draw(st.integers(1, 5)),
        idle_commands=frozenset(draw(st.lists(st.sampled_from(["Sleep", "Daemon", "Query", "unknown", "x"]),
                                              max_size=3))),
        duration_buckets=tuple(sorted(buckets)),
    )


@SETTINGS
@given(items=items, config=metrics_configs())
@example(items=[{"duration": 10 ** 400, "user": "\ud800"}], config=MetricsConfig(hosts=True))
@example(items=[{"user": "x\r# HELP evil y\r", "host": "[::1]:1"}, "not a row", 5], config=MetricsConfig(hosts=True))
def test_aggregate_never_raises_and_invariants_hold(items, config):
    sessions = [parse_session(item) for item in items if isinstance(item, dict)]
    stats = aggregate(sessions, config)
    n = len(sessions)

    assert stats.sessions == n
    assert sum(stats.by_state.values()) == n
    assert sum(stats.by_command.values()) == n
    assert sum(stats.by_user.values()) == n
    assert sum(stats.by_database.values()) == n
    for state in KNOWN_STATES:
        assert state in stats.by_state
    for command in KNOWN_COMMANDS:
        assert command in stats.by_command
    assert all(count >= 0 for count in stats.by_state.values())

    assert len(stats.by_user) <= config.max_users + 1
    assert len(stats.by_database) <= config.max_databases + 1
    if config.hosts:
        assert stats.by_host is not None
        assert sum(stats.by_host.values()) == n
        assert len(stats.by_host) <= config.max_hosts + 1
    else:
        assert stats.by_host is None
    for capped, limit in ((stats.by_user, config.max_users), (stats.by_database, config.max_databases)):
        if len(capped) > limit:
            assert OTHER in capped

    bounds = [bound for bound, _ in stats.active_buckets]
    counts = [count for _, count in stats.active_buckets]
    assert bounds == [*config.duration_buckets, math.inf]
    assert counts == sorted(counts)
    assert counts[-1] == stats.active_count
    assert all(count >= 0 for count in counts)
    assert stats.active_sum >= 0 and math.isfinite(stats.active_sum)

    with_duration = [s for s in sessions if s.duration is not None]
    assert stats.rows_without_duration == n - len(with_duration)
    active = [s.duration for s in with_duration if s.command not in config.idle_commands]
    assert stats.active_count == len(active)
    for bound, count in stats.active_buckets:
        assert count == sum(1 for d in active if d <= bound)
    assert set(stats.max_duration_by_command) <= set(stats.by_command)
    for command, longest in stats.max_duration_by_command.items():
        assert longest >= 0 and math.isfinite(longest)
        assert longest == max([s.duration for s in with_duration if s.command == command], default=0.0)

    for session in sessions:
        for value in (session.id, session.user, session.host, session.state, session.database, session.command):
            assert value and value == value.strip()
            value.encode("utf-8")

    # and the rendered exposition parses back with the same numbers
    identity = InstanceIdentity("af315b8e6aaa41799bd9a31f2de15abcin17", "orders-htap", "p" * 32, "cn-north-4")
    store = make_store()
    store.put(identity.instance_id, render_instance(identity, PollState(up=True, stats=stats)))
    families = {f.name: f for f in text_string_to_metric_families(store.render().decode("utf-8"))}
    assert [s.value for s in families["htap_sessions"].samples] == [n]
    assert {s.labels["user"]: s.value for s in families["htap_sessions_by_user"].samples} == stats.by_user
    assert {s.labels["state"]: s.value for s in families["htap_sessions_by_state"].samples} == stats.by_state


# --- API page validation -------------------------------------------------------------------------


MAX_PAGES = 3


def poll_body(body: bytes) -> tuple[SessionList | ApiError, int]:
    transport = FixedBodyTransport(body)
    api = fixed_body_client(transport, MAX_PAGES)
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(list_sessions(api, "af315b8e6aaa41799bd9a31f2de15abcin17")), transport.calls
    except ApiError as problem:
        return problem, transport.calls
    finally:
        loop.close()


def check_outcome(outcome: SessionList | ApiError, calls: int) -> None:
    if isinstance(outcome, ApiError):
        assert outcome.reason == "bad_response", outcome
        assert str(outcome)
    else:
        assert isinstance(outcome, SessionList)
        assert 1 <= outcome.pages == calls <= MAX_PAGES
        assert len(outcome.sessions) <= outcome.pages * PAGE_LIMIT
        assert 0 <= outcome.skipped_rows <= outcome.pages * PAGE_LIMIT


documents = st.one_of(
    st.fixed_dictionaries({"process_list": items}),
    st.fixed_dictionaries({"process_list": st.lists(row, min_size=PAGE_LIMIT - 1, max_size=PAGE_LIMIT + 1)}),
    st.fixed_dictionaries({"process_list": json_value}),
    st.dictionaries(any_text, json_value, max_size=3),
    json_value,
)


def encode(document) -> bytes:
    return json.dumps(document, allow_nan=True).encode("utf-8", "surrogatepass")


@SETTINGS
@given(body=st.one_of(st.binary(max_size=200), documents.map(encode)))
@example(body=b"[" * 100_000)
@example(body=b'{"process_list": ' + b"[" * 100_000 + b"}")
@example(body=b"")
@example(body=b"\xff\xfe")
@example(body=b'{"process_list": null}')
@example(body=b'{"process_list": {}}')
@example(body=b'{"process_list": [' + b",".join([b'{"id": "1"}'] * 101) + b"]}")
@example(body=b'{"process_list": [' + b",".join([b"1"] * 100) + b"]}")
@example(body=b'{"process_list": [' + b",".join([b"{}"] * 100) + b"]}")
@example(body=b'{"process_list": [{"duration": 1' + b"0" * 400 + b', "user": "\\ud800"}]}')
@example(body=b'{"process_list": [{"duration": 1' + b"0" * 5000 + b"}]}")
@example(body=b'{"process_list": [{"duration": NaN, "id": Infinity}]}')
def test_any_body_gives_sessions_or_bad_response(body):
    outcome, calls = poll_body(body)
    check_outcome(outcome, calls)


def test_page_validation_outcomes_exact():
    """The property above with known answers, so that it can fail for the right reason."""
    def reason_of(body: bytes) -> str:
        outcome, _ = poll_body(body)
        assert isinstance(outcome, ApiError)
        return f"{outcome.reason}: {outcome.message}"

    assert reason_of(b"[]") == "bad_response: response is not a JSON object"
    assert reason_of(b"{}") == "bad_response: response has no process_list"
    assert reason_of(b'{"process_list": 5}') == "bad_response: process_list is not a list"
    assert reason_of(b'{"process_list": [' + b",".join([b"{}"] * 101) + b"]}") == (
        "bad_response: page has 101 rows, more than limit=100")
    assert reason_of(b"[" * 100_000).startswith("bad_response: invalid JSON: ")
    assert reason_of(b"\xff").startswith("bad_response: invalid JSON: ")
    # full pages of rows without ids never end: the page cap stops the walk
    assert reason_of(b'{"process_list": [' + b",".join([b"{}"] * 100) + b"]}") == (
        f"bad_response: pagination did not end after {MAX_PAGES} pages of {PAGE_LIMIT}")

    outcome, calls = poll_body(b'{"process_list": [{"id": "1", "user": "a"}, 7, {"id": "1"}, {"id": "2"}]}')
    assert isinstance(outcome, SessionList)
    assert (outcome.pages, calls, outcome.skipped_rows) == (1, 1, 1)
    assert [(s.id, s.user) for s in outcome.sessions] == [("1", "a"), ("2", "unknown")]

    # a full page repeated by a server that ignores offset: the second page adds no new id and ends the walk
    page = b'{"process_list": [' + b",".join(b'{"id": "%d"}' % i for i in range(100)) + b"]}"
    outcome, calls = poll_body(page)
    assert isinstance(outcome, SessionList)
    assert (outcome.pages, calls, len(outcome.sessions)) == (2, 2, 100)
