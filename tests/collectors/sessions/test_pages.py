"""Pages decoded with their statements (for the top sessions' digests) hold the same rows as
without, plus `sql_statement`; the usual decoding is unchanged."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from htap_exporter.config import MetricsConfig
import pytest

from htap_exporter.collectors.sessions.pages import FIELDS, BadPage, SqlRow, decode_page, page_of, statement_of
from htap_exporter.collectors.sessions.counting import SessionCounter
from tests.collectors.sessions.test_properties import field_value, json_value

SETTINGS = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
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
