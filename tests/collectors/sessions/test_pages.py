"""Pages decoded with their statements (for the top sessions' digests) hold the same rows as
without, plus `sql_statement`; the usual decoding is unchanged; a fleet's PageDecoder, which learns
its label values, gives the rows decode_page gives."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from htap_exporter.config import MetricsConfig
import pytest

from htap_exporter.collectors.sessions import pages
from htap_exporter.collectors.sessions.pages import (FIELDS, LEARNED_FIELDS, MAX_LEARNED_LENGTH, MAX_LEARNED_VALUES,
                                                     BadPage, PageDecoder, SqlRow, as_mapping, decode_page, page_of,
                                                     statement_of)
from htap_exporter.collectors.sessions.counting import SessionCounter
from tests.collectors.sessions.test_properties import field_value, json_value
from tests.examples import examples

SETTINGS = settings(deadline=None, max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
statements = st.one_of(st.none(), st.text(max_size=40), st.integers(), json_value)
rows = st.fixed_dictionaries({}, optional={**{name: field_value for name in FIELDS}, "sql_statement": statements})


def _fields(row, names=FIELDS):
    return tuple(repr(getattr(row, name)) for name in names)


@SETTINGS
@given(page=st.lists(st.one_of(rows, rows, rows, json_value), max_size=20))
def test_a_page_with_statements_has_the_rows_of_the_usual_page_and_their_statements(page):
    body = json.dumps({"process_list": page}).encode("utf-8", "surrogatepass")
    try:
        usual = decode_page(body)
    except BadPage:  # a lone surrogate: not JSON, with or without the statements
        with pytest.raises(BadPage):
            decode_page(body, with_sql=True)
        return
    with_sql = decode_page(body, with_sql=True)
    assert usual.checked == with_sql.checked and usual.skipped == with_sql.skipped
    assert [_fields(row) for row in usual.rows] == [_fields(row) for row in with_sql.rows]
    parsed = [row for row in json.loads(body)["process_list"] if type(row) is dict]
    assert [repr(statement_of(row)) for row in with_sql.rows] == [repr(row.get("sql_statement")) for row in parsed]
    assert not any(hasattr(row, "sql_statement") for row in usual.rows)
    one, other = SessionCounter(MetricsConfig()), SessionCounter(MetricsConfig())
    one.add(usual)
    other.add(with_sql)
    assert one.result() == other.result()


@SETTINGS
@given(page=st.lists(st.one_of(rows, rows, json_value), max_size=20))
def test_rows_of_plain_json_keep_the_statement_when_asked(page):
    parsed = json.loads(json.dumps({"process_list": page}))["process_list"]
    usual, with_sql = page_of(parsed), page_of(parsed, with_sql=True)
    assert usual.skipped == with_sql.skipped
    assert [_fields(row) for row in usual.rows] == [_fields(row) for row in with_sql.rows]
    objects = [value for value in parsed if type(value) is dict]
    assert [repr(row.sql_statement) for row in with_sql.rows] == [repr(value.get("sql_statement")) for value in objects]
    assert all(type(row) is SqlRow for row in with_sql.rows)
    assert not any(hasattr(row, "sql_statement") for row in usual.rows)


# --- PageDecoder: a fleet's label values learnt, decoded as the same strings --------------------------

few_strings = st.sampled_from(["root", "etl", "OK", "EOF", "Query", "Sleep", "sales", ""])
learnable = st.one_of(st.none(), few_strings, few_strings, field_value)
learnable_rows = st.fixed_dictionaries({}, optional={
    **{name: field_value for name in FIELDS}, **{name: learnable for name in LEARNED_FIELDS},
    "sql_statement": statements})


def _body(rows) -> bytes:
    return json.dumps({"process_list": rows}).encode("utf-8", "surrogatepass")


@SETTINGS
@given(pages=st.lists(st.lists(st.one_of(learnable_rows, learnable_rows, learnable_rows, json_value), max_size=12),
                      min_size=1, max_size=6),
       hosts=st.booleans(), with_sql=st.booleans())
def test_a_decoder_that_learns_gives_the_pages_decode_page_gives(pages, hosts, with_sql):
    """Page after page (learning from some, decoding others by what it learnt), the same rows,
    statements, skipped values and counts as decode_page, and BadPage exactly when it raises;
    without hosts the rows' `host` reads as None."""
    decoder = PageDecoder(hosts=hosts)
    names = FIELDS if hosts else tuple(name for name in FIELDS if name != "host")
    for page in pages:
        body = _body(page)
        try:
            usual = decode_page(body, with_sql)
        except BadPage:
            with pytest.raises(BadPage):
                decoder.decode(body, with_sql)
            continue
        learnt = decoder.decode(body, with_sql)
        assert learnt.skipped == usual.skipped
        # Without hosts, a host of another type than text is not looked at, so the page stays checked.
        assert learnt.checked == usual.checked or (not hosts and learnt.checked)
        assert [_fields(row, names) for row in learnt.rows] == [_fields(row, names) for row in usual.rows]
        if not hosts:
            assert all(as_mapping(row)["host"] is None for row in learnt.rows if not hasattr(row, "host"))
        if with_sql:
            assert [repr(statement_of(row)) for row in learnt.rows] == [repr(statement_of(row)) for row in usual.rows]
        config = MetricsConfig(hosts=False)
        one, other = SessionCounter(config), SessionCounter(config)
        one.add(usual)
        other.add(learnt)
        assert one.result() == other.result()


def _page(*users: str, state: str = "OK", command: str = "Query", database: str = "sales") -> bytes:
    return _body([{"id": str(number), "user": user, "state": state, "command": command, "database": database,
                   "host": "10.0.0.1:5000", "duration": number} for number, user in enumerate(users)])


def test_known_values_come_back_as_the_same_strings_and_new_ones_are_learnt():
    decoder = PageDecoder()
    assert decoder.learnt("user") is None  # nothing learnt before the first page
    first = decoder.decode(_page("root", "etl"))
    assert decoder.learnt("user") == {"root", "etl"} and decoder.learnt("state") == {"OK"}
    second, third = decoder.decode(_page("etl", "root")), decoder.decode(_page("root"))
    assert [row.user for row in second.rows] == ["etl", "root"]
    assert second.rows[1].user is third.rows[0].user  # one string object for "root", page after page
    assert second.rows[0].command is third.rows[0].command and second.checked and third.checked
    assert first.rows[0].user == third.rows[0].user
    # A value not known yet: that page decoded the usual way, the value learnt for the next.
    newcomer = decoder.decode(_page("root", "bi_reader", state="EOF"))
    assert [(row.user, row.state) for row in newcomer.rows] == [("root", "EOF"), ("bi_reader", "EOF")]
    assert decoder.learnt("user") == {"root", "etl", "bi_reader"} and decoder.learnt("state") == {"OK", "EOF"}
    again, once_more = decoder.decode(_page("bi_reader", state="EOF")), decoder.decode(_page("bi_reader"))
    assert again.rows[0].user is once_more.rows[0].user


def test_a_field_with_too_many_or_too_long_values_is_decoded_as_plain_strings():
    decoder = PageDecoder()
    decoder.decode(_page("root"))
    users = [f"user{number}" for number in range(MAX_LEARNED_VALUES)]
    page = decoder.decode(_page(*users[:100]))
    assert decoder.learnt("user") == {"root", *users[:100]}
    page = decoder.decode(_page(*users[100:]))  # 257 in all: given up on
    assert decoder.learnt("user") is None and decoder.learnt("state") == {"OK"}
    assert [row.user for row in page.rows] == users[100:]
    assert [row.user for row in decoder.decode(_page("someone else")).rows] == ["someone else"]
    long = "d" * (MAX_LEARNED_LENGTH + 1)
    assert [row.database for row in decoder.decode(_page("root", database=long)).rows] == [long]
    assert decoder.learnt("database") is None and decoder.learnt("command") == {"Query"}
    assert [row.database for row in decoder.decode(_page("root", database=long + "x")).rows] == [long + "x"]


def test_without_hosts_rows_have_no_host_and_bad_pages_are_still_bad():
    decoder = PageDecoder(hosts=False)
    decoder.decode(_page("root"))
    row = decoder.decode(_page("root")).rows[0]
    assert not hasattr(row, "host") and as_mapping(row)["host"] is None and as_mapping(row)["user"] == "root"
    assert PageDecoder(hosts=True).decode(_page("root")).rows[0].host == "10.0.0.1:5000"
    for body, message in ((b'{"process_list": [', "invalid JSON"), (b"[]", "not a JSON object"),
                          (b'{"process_list": 3}', "not a list")):
        with pytest.raises(BadPage, match=message):
            decoder.decode(body)


def test_after_a_page_the_checked_types_refuse_the_next_goes_the_usual_way_first(monkeypatch):
    """A server whose pages are never checked ones (a negative duration, say) must not cost every
    page a third decoding: after such a page, the next is decoded the usual way, then by what was
    learnt again."""
    usual = []
    monkeypatch.setattr(pages, "decode_page", lambda body, with_sql=False: usual.append(body) or decode_page(body, with_sql))
    decoder = PageDecoder()
    decoder.decode(_page("root"))  # learnt from
    assert len(usual) == 1
    decoder.decode(_page("root"))
    assert len(usual) == 1  # by what was learnt
    odd = _body([{"id": "1", "user": "root", "duration": -5}])
    assert not decoder.decode(odd).checked and usual[-1] == odd
    assert decoder.decode(_page("root")).checked and len(usual) == 3  # the usual way, once
    assert decoder.decode(_page("root")).checked and len(usual) == 3
