"""SessionCounter (page by page), label value caps, page decoding and the poll deadline."""

from __future__ import annotations

import asyncio
import itertools
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from htap_exporter.clock import Deadline
from htap_exporter.config import MetricsConfig
from htap_exporter.collectors.labels import CONTROL_CHARACTERS, DEFAULT_MAX_LABEL_LENGTH, UNKNOWN, LabelCache, label_value
from htap_exporter.collectors.sessions.counting import SessionCounter, aggregate, parse_session
from htap_exporter.collectors.sessions.pages import MAX_EXACT_DURATION, MAX_ID_LENGTH, BadPage, Page, decode_page
from htap_exporter.cloud.transport import parse_json
from tests.examples import examples
from tests.fakes import FakeClock
from tests.collectors.sessions.test_properties import field_value, json_value, metrics_configs

SETTINGS = settings(deadline=None, max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=400)
long_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), min_size=100, max_size=3000)


# --- label values of any length and content -------------------------------------------------------


@SETTINGS
@given(value=st.one_of(any_text, long_text, json_value), max_length=st.sampled_from([32, 64, 128, 1000]))
def test_any_label_value_is_capped_printable_encodable_and_stable(value, max_length):
    text = label_value(value, max_length)
    assert 1 <= len(text) <= max_length
    assert not CONTROL_CHARACTERS.search(text)
    text.encode("utf-8")  # never a lone surrogate or a broken sequence
    assert text == text.strip() or text == UNKNOWN
    assert label_value(text, max_length) == text  # cleaning twice changes nothing (counting relies on it)
    assert label_value(value, max_length) == text  # the same value gets the same label on every poll


@SETTINGS
@given(prefix=st.text(min_size=200, max_size=300), first=st.text(min_size=1, max_size=5),
       second=st.text(min_size=1, max_size=5))
def test_long_values_sharing_a_prefix_stay_distinct(prefix, first, second):
    a, b = label_value(prefix + "|" + first), label_value(prefix + "|" + second)
    assert len(a) == len(b) == DEFAULT_MAX_LABEL_LENGTH
    assert (a == b) == (label_value(prefix + "|" + first, 10**6) == label_value(prefix + "|" + second, 10**6))


def test_cut_keeps_whole_characters_and_a_readable_prefix():
    value = "用户" * 200 + "🙂" * 100
    text = label_value(value, 40)
    assert len(text) == 40 and text.startswith("用户" * 13) and text[27] == "~"
    assert text.encode("utf-8").decode("utf-8") == text
    assert label_value("x" * 128) == "x" * 128  # at the cap: unchanged
    assert label_value("x" * 129) != "x" * 129 and len(label_value("x" * 129)) == 128


def test_huge_label_values_in_a_poll_are_capped_and_counted_apart():
    config = MetricsConfig(max_label_length=64)
    rows = [{"id": str(n), "user": "u" * 100_000 + str(n % 3), "database": "d\r\x00" * 10, "duration": 1}
            for n in range(9)]
    stats = aggregate([parse_session(row, 64) for row in rows], config)
    assert sorted(stats.by_user.values()) == [3, 3, 3]
    assert all(len(user) == 64 and user.startswith("u" * 50) for user in stats.by_user)
    assert list(stats.by_database) == [("d\ufffd\ufffd" * 10).rstrip("\ufffd") + "\ufffd\ufffd"]


# --- page by page ------------------------------------------------------------------------------------

row_objects = st.fixed_dictionaries({}, optional={name: field_value for name in
                                                 ("id", "user", "host", "state", "database", "command", "duration")})
rows = st.lists(st.fixed_dictionaries({}, optional={name: field_value for name in
                                                    ("user", "host", "state", "database", "command", "duration")}),
                max_size=60)


@SETTINGS
@given(rows=rows, config=metrics_configs(), cuts=st.lists(st.integers(0, 60), max_size=4))
def test_counting_page_by_page_equals_counting_all_rows_at_once(rows, config, cuts):
    whole = SessionCounter(config)
    whole.add_page(rows)
    paged = SessionCounter(config)
    bounds = sorted({0, len(rows), *[min(cut, len(rows)) for cut in cuts]})
    for start, end in zip(bounds, bounds[1:]):
        paged.add_page(rows[start:end])
    one, many = whole.result(), paged.result()
    assert one.active_sum == pytest.approx(many.active_sum)
    assert one._asdict() | {"active_sum": 0} == many._asdict() | {"active_sum": 0}
    # and the same as the per-row reference: one Session per row, then aggregate
    reference = aggregate([parse_session(row) for row in rows], config)
    assert reference._asdict() | {"active_sum": 0} == one._asdict() | {"active_sum": 0}
    assert math.isclose(reference.active_sum, one.active_sum, rel_tol=1e-9, abs_tol=1e-9)


# --- an independent per-row reference -----------------------------------------------------------


def per_row_reference(rows, config: MetricsConfig) -> dict:
    """The figures counted the plain way, one cleaned row at a time: what the fast counting must
    equal (it counts raw values and cleans each distinct one once)."""
    from bisect import bisect_left
    from htap_exporter.collectors.sessions.capping import MAX_ENUM_VALUES, cap_counts, cap_maxima
    from htap_exporter.collectors.sessions.counting import KNOWN_COMMANDS, KNOWN_STATES, client_ip

    bounds = tuple(config.duration_buckets) + (math.inf,)
    states = {state: 0 for state in KNOWN_STATES}
    commands = {command: 0 for command in KNOWN_COMMANDS}
    maxima = {command: 0.0 for command in KNOWN_COMMANDS}
    users: dict[str, int] = {}
    databases: dict[str, int] = {}
    hosts: dict[str, int] = {}
    buckets = [0] * len(bounds)
    active_count = without_duration = 0
    for row in rows:
        session = parse_session(row, config.max_label_length)
        states[session.state] = states.get(session.state, 0) + 1
        commands[session.command] = commands.get(session.command, 0) + 1
        users[session.user] = users.get(session.user, 0) + 1
        databases[session.database] = databases.get(session.database, 0) + 1
        host = client_ip(session.host)
        hosts[host] = hosts.get(host, 0) + 1
        if session.duration is None:
            without_duration += 1
            continue
        maxima[session.command] = max(maxima.get(session.command, 0.0), session.duration)
        if session.command not in config.idle_commands:
            active_count += 1
            buckets[bisect_left(bounds, session.duration)] += 1
    kept_commands = cap_counts(commands, MAX_ENUM_VALUES, KNOWN_COMMANDS)
    return {
        "sessions": len(rows),
        "by_state": cap_counts(states, MAX_ENUM_VALUES, KNOWN_STATES),
        "by_command": kept_commands,
        "by_user": cap_counts(users, config.max_users),
        "by_database": cap_counts(databases, config.max_databases),
        "by_host": cap_counts(hosts, config.max_hosts) if config.hosts else None,
        "max_duration_by_command": cap_maxima(maxima, kept_commands),
        "active_buckets": tuple(zip(bounds, itertools.accumulate(buckets))),
        "active_count": active_count,
        "rows_without_duration": without_duration,
    }


@SETTINGS
@given(rows=rows, config=metrics_configs(), cuts=st.lists(st.integers(0, 60), max_size=4))
def test_counting_equals_the_per_row_reference(rows, config, cuts):
    counter = SessionCounter(config)
    bounds = sorted({0, len(rows), *[min(cut, len(rows)) for cut in cuts]})
    for start, end in zip(bounds, bounds[1:]):
        counter.add_page(rows[start:end])
    stats = counter.result()._asdict()
    assert {key: stats[key] for key in stats if key != "active_sum"} == per_row_reference(rows, config)


def test_durations_near_the_float_maximum_sum_to_infinity():
    counter = SessionCounter(MetricsConfig())
    counter.add_page([{"id": str(n), "command": "Query", "duration": "1.5e308"} for n in range(3)])
    stats = counter.result()
    assert stats.active_sum == math.inf and stats.active_count == 3


def test_values_equal_in_python_but_not_as_labels_are_counted_apart():
    # True == 1 == 1.0 and False == 0 in Python, so counting raw values in one dict would merge them;
    # as labels they are "unknown", "1", "1.0" and "0".
    rows = [{"user": True, "state": 1, "database": 1.0, "command": False, "duration": 1},
            {"user": 1, "state": True, "database": 1, "command": 0, "duration": 2},
            {"user": 1.0, "state": 1.0, "database": True, "command": "0", "duration": 3}]
    config = MetricsConfig(max_users=5, max_databases=5)
    counter = SessionCounter(config)
    counter.add_page(rows)
    stats = counter.result()
    assert stats.by_user == {"unknown": 1, "1": 1, "1.0": 1}
    assert stats.by_database == {"1.0": 1, "1": 1, "unknown": 1}
    assert {k: v for k, v in stats.by_state.items() if v} == {"1": 1, "unknown": 1, "1.0": 1}
    assert {k: v for k, v in stats.by_command.items() if v} == {"unknown": 1, "0": 2}
    assert stats._asdict() | {"active_sum": 0} == per_row_reference(rows, config) | {"active_sum": 0}


def test_ids_are_deduplicated_across_pages_and_long_ids_kept_as_digests():
    counter = SessionCounter(MetricsConfig())
    assert counter.add_page([{"id": "1"}, {"id": 2}, {"id": " 1 "}, {"id": None}, {}]) == 2
    assert counter.add_page([{"id": "2"}, {"id": "x" * 10_000}, {"id": "x" * 10_000}, "not a row"]) == 1
    assert counter.sessions == 5 and counter.skipped_rows == 1
    assert all(len(key) <= 64 for key in counter._ids._seen)


def test_a_page_of_new_ids_that_is_not_usual_leaves_the_ids_seen_as_they_were():
    """The usual page's ids go into the poll's set at once; a page of ids new to the poll that
    repeats one, or has an empty one, is taken back out and counted the careful way."""
    counter = SessionCounter(MetricsConfig())
    assert counter.add_page([{"id": "a"}, {"id": "b"}]) == 2
    assert counter.add_page([{"id": "c"}, {"id": " c"}, {"id": "d"}]) == 2  # "c" twice in the page
    assert counter.add_page([{"id": "f"}, {"id": " "}]) == 1  # an empty id: a row without one
    assert counter.add_page([{"id": "c"}, {"id": "f"}, {"id": "e"}]) == 1
    assert counter.sessions == 2 + 2 + 2 + 1
    assert counter._ids._seen == {"a", "b", "c", "d", "e", "f"}


def test_a_label_cache_shared_by_polls_counts_alike_and_stays_bounded():
    config = MetricsConfig(max_users=3, max_label_length=32)
    cache = LabelCache(config.max_label_length, limit=10)
    for poll in range(5):
        rows = [{"id": str(n), "user": f" user{(n + poll) % 25}\x00 ", "database": "d" * 40, "command": "Query",
                 "duration": n} for n in range(30)]
        shared = SessionCounter(config, labels=cache)
        shared.add_page(rows)
        alone = SessionCounter(config)
        alone.add_page(rows)
        assert shared.result() == alone.result()
        assert len(cache.labels) <= 10
        assert all(len(raw) <= 32 for raw in cache.labels)  # long values are cleaned each time, not kept
    # long values, however long labels may be, are held up to a number of characters
    roomy = LabelCache(65536, limit_characters=10_000)
    for n in range(20):
        roomy.clean("x" * 3000 + str(n))
        held = sum(len(raw) + len(clean) for raw, clean in roomy.labels.items())
        assert held == roomy.characters <= 10_000 + 2 * 3002  # the limit, and the entry that reached it
    # a cache made for another label length is not used
    other = SessionCounter(MetricsConfig(max_label_length=20), labels=cache)
    other.add_page([{"id": "1", "user": "a-much-longer-user-name"}])
    assert "a-much-longer-user-name" not in cache.labels and len(next(iter(other.result().by_user))) == 20


# --- JSON: RFC 8259, decided by msgspec; where Python's parser takes more, a bad_response -------------

# (body, what parse_json gives: a value, or None for an error)
BODIES = [(b'{"process_list": []}', {"process_list": []}), (b'{"n": 1e400}', {"n": math.inf}),
          (b'{"n": 9223372036854775807}', {"n": 9223372036854775807}), (b'{"a": 1, "a": 2}', {"a": 2}),
          (b'"\\u0000"', "\x00"), (b'{"x": -0.0, "y": 1.5e-300}', {"x": -0.0, "y": 1.5e-300}),
          (b'{"n": 123456789012345678901234567890}', {"n": 123456789012345678901234567890}),
          (b'{"a": "\\ud83d\\ude00"}', {"a": "\U0001f600"}),
          (b'{"a": "\\ud800"}', None), (b'{"a": "x\\udc00y"}', None), (b'{"n": NaN}', None),
          (b'{"n": -Infinity}', None), (b'[1, 2', None), (b"\xff", None), (b"[" * 100_000 + b"]" * 100_000, None),
          (b'\xef\xbb\xbf{"a": 1}', None), (b"", None), (b"<html>oops</html>", None)]


@pytest.mark.parametrize(("body", "expected"), BODIES, ids=range(len(BODIES)))
def test_parse_json_takes_json_and_refuses_the_rest(body, expected):
    try:
        parsed = parse_json(body)
    except (ValueError, RecursionError):
        parsed = None
    assert repr(parsed) == repr(expected)
    if expected is None:  # a page of it is a bad_response
        with pytest.raises(BadPage, match="^invalid JSON: "):
            decode_page(body)


def _strict_json(body: bytes) -> bool:
    """Whether Python's parser, held to RFC 8259 (UTF-8, no NaN or Infinity, no lone surrogate,
    raw or escaped), takes `body`."""
    def refuse(constant: str) -> None:
        raise ValueError(constant)
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=refuse)
        json.dumps(document, ensure_ascii=False).encode("utf-8")  # a lone surrogate cannot be encoded
    except (ValueError, RecursionError):  # UnicodeError is a ValueError
        return False
    return True


@SETTINGS
@given(document=json_value)
def test_parse_json_agrees_with_the_standard_library_on_json(document):
    body = json.dumps(document).encode("utf-8", "surrogatepass")
    if not _strict_json(body):  # a lone surrogate, NaN, Infinity
        with pytest.raises(ValueError):
            parse_json(body)
        return
    assert repr(parse_json(body)) == repr(json.loads(body))


def counted(rows, config: MetricsConfig, skipped: int = 0):
    counter = SessionCounter(config)
    if isinstance(rows, Page):
        counter.add(rows)
    else:
        counter.add_page(rows)
    return counter.result()._asdict(), counter.skipped_rows + skipped


@SETTINGS
@given(document=st.fixed_dictionaries({"process_list": st.lists(st.one_of(row_objects, json_value), max_size=30)}),
       config=metrics_configs())
def test_rows_decoded_by_msgspec_count_as_the_parsed_json_does(document, config):
    """A page decoded straight into Rows (or, when its list holds values that are not objects, as
    plain JSON) counts exactly as the same page parsed by the standard library."""
    body = json.dumps(document).encode("utf-8", "surrogatepass")
    try:
        page = decode_page(body)
    except BadPage:
        assert not _strict_json(body)  # a lone surrogate, NaN, Infinity
        return
    generic = json.loads(body)["process_list"]
    assert page.skipped == sum(type(value) is not dict for value in generic)
    assert counted(page, config) == counted(generic, config)


# Rows as the API sends them, and near misses of the types a checked page allows.
api_ids = st.one_of(st.none(), st.text(max_size=MAX_ID_LENGTH + 4), st.sampled_from(["1", "2", " 1 ", ""]),
                    st.integers(0, 3))
api_labels = st.one_of(st.none(), st.sampled_from(["OK", "Sleep", "Query", "Daemon", "root", " ", ""]),
                       st.text(max_size=5), st.integers(0, 2))
api_durations = st.one_of(st.none(), st.integers(0, 5000), st.integers(MAX_EXACT_DURATION - 2, MAX_EXACT_DURATION + 2),
                          st.floats(min_value=0, max_value=1e6), st.just(-0.0), st.integers(-3, -1),
                          st.floats(min_value=1e300, max_value=1.7e308), st.sampled_from(["12", " 7.5 ", "x", "-1"]))
api_row = st.fixed_dictionaries({}, optional={"id": api_ids, "user": api_labels, "host": api_labels,
                                              "state": api_labels, "database": api_labels, "command": api_labels,
                                              "duration": api_durations})


def _checkable(row: dict) -> bool:
    def label(value):
        return value is None or type(value) is str
    duration = row.get("duration")
    return (all(label(row.get(name)) for name in ("user", "host", "state", "database", "command"))
            and (row.get("id") is None or (type(row.get("id")) is str and len(row["id"]) <= MAX_ID_LENGTH))
            and (duration is None or type(duration) is str or (type(duration) is float and duration >= 0)
                 or (type(duration) is int and 0 <= duration <= MAX_EXACT_DURATION)))


@SETTINGS
@given(rows=st.lists(api_row, max_size=30), config=metrics_configs(), cut=st.integers(0, 30))
def test_checked_pages_count_as_the_generic_way(rows, config, cut):
    """A page whose field types msgspec checked while decoding is counted on that trust (no type
    checks per value); one that breaks a rule is decoded again unchecked. Both count as the standard
    library's parse of the same bytes does, page by page."""
    pages = [rows[:cut], rows[cut:]]
    decoded = [decode_page(json.dumps({"process_list": part}).encode()) for part in pages]
    for part, page in zip(pages, decoded):
        assert page.checked == all(_checkable(row) for row in part)
    fast, generic = SessionCounter(config), SessionCounter(config)
    for part, page in zip(pages, decoded):
        assert fast.add(page) == generic.add_page(json.loads(json.dumps(part)))
    one, other = fast.result()._asdict(), generic.result()._asdict()
    assert math.isclose(one.pop("active_sum"), other.pop("active_sum"), rel_tol=1e-12)
    assert one == other


@SETTINGS
@given(rows=st.lists(api_row.map(lambda row: {k: v for k, v in row.items() if k != "id"}), max_size=30),
       config=metrics_configs())
def test_checked_pages_count_as_the_per_row_reference(rows, config):
    page = decode_page(json.dumps({"process_list": rows}).encode())
    counter = SessionCounter(config)
    counter.add(page)
    stats = counter.result()._asdict()
    assert {key: stats[key] for key in stats if key != "active_sum"} == per_row_reference(rows, config)


def test_a_duration_of_minus_zero_is_written_as_zero():
    """-0.0 and 0.0 are equal, so a family written for one would be kept for the other: the count
    never gives -0.0 (it has no meaning as a duration)."""
    for body in (b'{"process_list": [{"id": "1", "command": "X", "duration": -0.0}]}',
                 b'{"process_list": [{"id": "1", "command": "X", "duration": "-0"}]}'):
        counter = SessionCounter(MetricsConfig())
        counter.add(decode_page(body))
        stats = counter.result()
        assert math.copysign(1, stats.max_duration_by_command["X"]) == 1
        assert math.copysign(1, stats.active_sum) == 1


def test_a_page_is_decoded_checked_unchecked_or_as_plain_json():
    page = decode_page(b'{"process_list": [{"id": "a", "sql_statement": "select 1", "user": "u"}], "x": 1}')
    assert page.checked and page.skipped == 0
    assert [(row.id, row.user, row.state) for row in page.rows] == [("a", "u", None)]
    unusual = decode_page(b'{"process_list": [{"id": 7, "user": true, "duration": -1}, {"duration": 1e400}]}')
    assert not unusual.checked
    assert [(row.id, row.user, row.duration) for row in unusual.rows] == [(7, True, -1), (None, None, math.inf)]
    mixed = decode_page(b'{"process_list": [{"id": "a"}, 5, [], null, {"id": "b", "duration": 1e400}]}')
    assert not mixed.checked and mixed.skipped == 3 and mixed.size == 5
    assert [(row.id, row.duration) for row in mixed.rows] == [("a", None), ("b", math.inf)]
    counter = SessionCounter(MetricsConfig())  # rows of decoded pages, checked or not, count as rows
    assert counter.add_page(page.rows + unusual.rows) == 2 and counter.sessions == 3 and counter.skipped_rows == 0
    for body, message in ((b'{"process_list": null}', "response has no process_list"),
                          (b'{"other": []}', "response has no process_list"),
                          (b'{"process_list": {}}', "process_list is not a list"),
                          (b'[{"process_list": []}]', "response is not a JSON object"),
                          (b'{"process_list": [{"id": NaN}]}', "invalid JSON: "),
                          (b'{"process_list": [{"id": 1}, 2, ]}', "invalid JSON: ")):
        with pytest.raises(BadPage, match="^" + message):
            decode_page(body)


# --- the poll deadline on the injected clock -----------------------------------------------------------


async def test_deadline_times_out_on_the_fake_clock_and_cancels_the_body():
    clock = FakeClock()
    cancelled = asyncio.Event()

    async def body() -> None:
        try:
            await clock.sleep(100)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def guarded() -> str:
        try:
            async with Deadline(clock, 30):
                await body()
        except TimeoutError:
            return f"timeout at {clock.monotonic() - 1000:g}"
        return "finished"

    task = asyncio.create_task(guarded())
    await clock.advance(29.9)
    assert not task.done()
    await clock.advance(0.2)
    assert await task == "timeout at 30" and cancelled.is_set()


async def test_deadline_not_reached_leaves_no_timer_behind():
    clock = FakeClock()

    async def guarded() -> str:
        async with Deadline(clock, 30):
            await clock.sleep(5)
        return "finished"

    task = asyncio.create_task(guarded())
    await clock.advance(5)
    assert await task == "finished"
    assert clock.pending == 0


async def test_an_outside_cancel_stays_a_cancellation():
    clock = FakeClock()

    async def guarded() -> None:
        async with Deadline(clock, 30):
            await clock.sleep(100)

    task = asyncio.create_task(guarded())
    await clock.advance(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_deadline_queue_holds_one_timer_and_fires_in_order():
    from htap_exporter.clock import DeadlineQueue
    clock = FakeClock()
    queue = DeadlineQueue(clock)
    fired: list[str] = []
    first = queue.add(10, lambda: fired.append("a"))
    queue.add(20, lambda: fired.append("b"))
    queue.add(5, lambda: fired.append("c"))
    cancelled = queue.add(7, lambda: fired.append("never"))
    cancelled.cancel()
    assert clock.pending == 1  # one timer, for the earliest deadline (5 s)
    await clock.advance(6)
    assert fired == ["c"]
    first.cancel()
    await clock.advance(30)
    assert fired == ["c", "b"] and len(queue) == 0


async def test_many_deadlines_that_end_early_cost_one_timer():
    from htap_exporter.clock import DeadlineQueue
    clock = FakeClock()
    queue = DeadlineQueue(clock)
    for _ in range(1000):
        queue.add(90, lambda: None).cancel()
        await clock.advance(0.01)
    assert clock.pending == 1 and len(queue) == 0


async def test_a_queued_deadline_times_out_a_poll():
    from htap_exporter.clock import DeadlineQueue
    clock = FakeClock()
    queue = DeadlineQueue(clock)

    async def guarded() -> str:
        try:
            async with Deadline(clock, 30, queue):
                await clock.sleep(100)
        except TimeoutError:
            return f"timeout at {clock.monotonic() - 1000:g}"
        return "finished"

    task = asyncio.create_task(guarded())
    await clock.advance(31)
    assert await task == "timeout at 30"
