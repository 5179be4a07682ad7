"""list_sessions against a mocked session-list API (aioresponses, real aiohttp + Transport)."""

from __future__ import annotations

import asyncio
import json

import pytest
from aioresponses import aioresponses

from yarl import URL

from htap_exporter.collectors.sessions.fetch import list_sessions
from htap_exporter.cloud.paging import PAGE_LIMIT
from htap_exporter.cloud.client import ProjectClient
from htap_exporter.cloud.auth import StaticTokenAuthenticator
from htap_exporter.clock import RateLimiter
from htap_exporter.config import Secret, SecretSource, TokenAuth
from htap_exporter.redact import Redactor
from htap_exporter.collectors.labels import UNKNOWN
from htap_exporter.collectors.sessions.counting import Session
from htap_exporter.cloud.transport import ApiError


ENDPOINT = "https://gaussdb.cn-north-4.myhuaweicloud.com"
PROJECT = "054e292c9880d4992f02c0196d3ea468"
INSTANCE = "af315b8e6aaa41799bd9a31f2de15abcin17"
TOKEN = "MIIstatic-token-value-0123456789"
PATH = f"/v3/{PROJECT}/instances/{INSTANCE}/htap/process"


def page_url(offset: int) -> str:
    return f"{ENDPOINT}{PATH}?limit=100&offset={offset}"


def rows(start: int, count: int, **extra: object) -> list[dict[str, object]]:
    return [{"id": str(i), "user": "app", "host": f"10.0.0.{i % 250}:4000", "state": "OK",
             "database": "sales", "sql_statement": "select 1", "duration": i, "command": "Query", **extra}
            for i in range(start, start + count)]


def request_count(mock: aioresponses) -> int:
    return sum(len(calls) for calls in mock.requests.values())


def make_api(transport, clock, *, max_pages: int = 10, limiter: RateLimiter | None = None) -> ProjectClient:
    auth = StaticTokenAuthenticator(TokenAuth(token=SecretSource(value=Secret(TOKEN))), clock, Redactor())
    return ProjectClient(endpoint=ENDPOINT, project_id=PROJECT, auth=auth, transport=transport,
                   max_pages=max_pages, limiter=limiter)


@pytest.fixture
def api(transport, clock):
    return make_api(transport, clock)


# --- pagination -----------------------------------------------------------------------------------

async def test_single_short_page(api, mock, transport):
    mock.get(page_url(0), payload={"process_list": rows(0, 3)})
    result = await list_sessions(api, INSTANCE)
    assert [s.id for s in result.sessions] == ["0", "1", "2"]
    assert result.pages == 1
    assert result.skipped_rows == 0
    assert request_count(mock) == 1
    sent = transport.sent[0]
    assert sent.method == "GET"
    assert str(sent.url) == page_url(0)
    assert sent.url.raw_query_string == "limit=100&offset=0"
    assert sent.url.path == PATH


async def test_pagination_offsets_and_exact_query(api, mock, transport):
    mock.get(page_url(0), payload={"process_list": rows(0, 100)})
    mock.get(page_url(100), payload={"process_list": rows(100, 100)})
    mock.get(page_url(200), payload={"process_list": rows(200, 42)})
    result = await list_sessions(api, INSTANCE)
    # the first page starts a walk; the next ones continue it (a slot for them first)
    assert [sent.continuing for sent in transport.sent] == [False, True, True]
    assert len(result.sessions) == 242
    assert [s.id for s in result.sessions] == [str(i) for i in range(242)]
    assert result.pages == 3
    assert [s.url.raw_query_string for s in transport.sent] == [
        "limit=100&offset=0", "limit=100&offset=100", "limit=100&offset=200"]
    assert request_count(mock) == 3
    assert PAGE_LIMIT == 100


async def test_stop_on_empty_page(api, mock, transport):
    mock.get(page_url(0), payload={"process_list": rows(0, 100)})
    mock.get(page_url(100), payload={"process_list": []})
    result = await list_sessions(api, INSTANCE)
    assert len(result.sessions) == 100
    assert result.pages == 2
    assert request_count(mock) == 2


async def test_empty_instance(api, mock):
    mock.get(page_url(0), payload={"process_list": []})
    result = await list_sessions(api, INSTANCE)
    assert result.sessions == []
    assert result.pages == 1


async def test_server_ignoring_offset_stops_when_a_page_adds_nothing(api, mock):
    same = {"process_list": rows(0, 100)}
    mock.get(page_url(0), payload=same)
    mock.get(page_url(100), payload=same)
    mock.get(page_url(200), payload=same)  # must never be asked for
    result = await list_sessions(api, INSTANCE)
    assert len(result.sessions) == 100
    assert result.pages == 2
    assert request_count(mock) == 2


async def test_page_cap_is_bad_response(transport, clock, mock):
    api = make_api(transport, clock, max_pages=3)
    for page in range(5):
        mock.get(page_url(page * 100), payload={"process_list": rows(page * 100, 100)})
    with pytest.raises(ApiError) as caught:
        await list_sessions(api, INSTANCE)
    assert caught.value.reason == "bad_response"
    assert "3 pages" in caught.value.message
    assert request_count(mock) == 3


async def test_deduplicates_by_id_when_rows_shift(api, mock):
    # Between the two pages 5 sessions ended, so page 2 starts 5 rows "early": ids 95..99 repeat.
    mock.get(page_url(0), payload={"process_list": rows(0, 100)})
    second = rows(95, 50)
    second[7]["user"] = "changed"  # a new id: kept as given
    mock.get(page_url(100), payload={"process_list": second})
    result = await list_sessions(api, INSTANCE)
    ids = [s.id for s in result.sessions]
    assert ids == [str(i) for i in range(145)]
    assert len(set(ids)) == 145
    assert result.pages == 2
    # the first occurrence of a duplicate wins
    assert next(s for s in result.sessions if s.id == "97").duration == 97.0


async def test_integer_and_string_ids_deduplicate(api, mock):
    mock.get(page_url(0), payload={"process_list": [{"id": 42}, {"id": "42"}, {"id": " 42 "}, {"id": 43}]})
    result = await list_sessions(api, INSTANCE)
    assert [s.id for s in result.sessions] == ["42", "43"]


async def test_rows_without_id_are_all_kept(api, mock):
    mock.get(page_url(0), payload={"process_list": [{"user": "a"}, {"user": "b"}, {"id": ""}]})
    result = await list_sessions(api, INSTANCE)
    assert [s.user for s in result.sessions] == ["a", "b", UNKNOWN]
    assert all(s.id == UNKNOWN for s in result.sessions)


async def test_lenient_rows(api, mock):
    page = [
        {"id": "1", "duration": 5, "command": "Query"},
        {"id": "2", "duration": 2.5},
        {"id": "3", "duration": "7"},
        {"id": "4", "duration": " 8.5 "},
        {"id": "5", "duration": "junk"},
        {"id": "6", "duration": None},
        {"id": "7"},
        {"id": "8", "duration": True},
        {"id": "9", "duration": -3},
        {"id": "10", "duration": "nan"},
        {"id": "11", "duration": [1]},
        {"id": "12", "duration": {"s": 1}},
    ]
    mock.get(page_url(0), payload={"process_list": page})
    result = await list_sessions(api, INSTANCE)
    durations = {s.id: s.duration for s in result.sessions}
    assert durations == {"1": 5.0, "2": 2.5, "3": 7.0, "4": 8.5, "5": None, "6": None, "7": None,
                         "8": None, "9": None, "10": None, "11": None, "12": None}
    assert result.skipped_rows == 0


async def test_missing_fields_become_unknown_and_sql_is_dropped(api, mock):
    mock.get(page_url(0), payload={"process_list": [
        {"id": "1", "sql_statement": "select secret from customers"},
        {"id": "2", "user": "  bob  ", "host": "", "state": None, "database": 5, "command": "Sleep",
         "duration": "12"},
    ]})
    result = await list_sessions(api, INSTANCE)
    assert result.sessions == [
        Session(id="1", user=UNKNOWN, host=UNKNOWN, state=UNKNOWN, database=UNKNOWN, command=UNKNOWN,
                duration=None),
        Session(id="2", user="bob", host=UNKNOWN, state=UNKNOWN, database="5", command="Sleep", duration=12.0),
    ]
    assert not hasattr(result.sessions[0], "sql_statement")


async def test_non_object_rows_are_skipped_and_counted(api, mock):
    mock.get(page_url(0), payload={"process_list": [1, "x", None, [], {"id": "1"}, True, {"id": "2"}]})
    result = await list_sessions(api, INSTANCE)
    assert [s.id for s in result.sessions] == ["1", "2"]
    assert result.skipped_rows == 5


async def test_skipped_rows_are_counted_across_pages(api, mock):
    mock.get(page_url(0), payload={"process_list": rows(0, 98) + [7, "bad"]})
    mock.get(page_url(100), payload={"process_list": [None] + rows(98, 3)})
    result = await list_sessions(api, INSTANCE)
    assert len(result.sessions) == 101
    assert result.skipped_rows == 3
    assert result.pages == 2


# --- headers and auth -------------------------------------------------------------------------------

async def test_token_and_fixed_headers_sent(api, mock, transport):
    mock.get(page_url(0), payload={"process_list": []})
    await list_sessions(api, INSTANCE)
    [call] = mock.requests[("GET", URL(page_url(0)))]
    headers = call.kwargs["headers"]
    assert headers["X-Auth-Token"] == TOKEN
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Language"] == "en-us"
    assert call.kwargs["allow_redirects"] is False
    assert transport.sent[0].headers["X-Auth-Token"] == TOKEN


async def test_401_with_static_token_is_not_retried(api, mock, observed):
    mock.get(page_url(0), status=401, repeat=True,
             payload={"error_code": "APIG.0301", "error_msg": "Incorrect IAM authentication information"})
    with pytest.raises(ApiError) as caught:
        await list_sessions(api, INSTANCE)
    problem = caught.value
    assert (problem.reason, problem.status, problem.error_code) == ("auth", 401, "APIG.0301")
    assert problem.error_msg == "Incorrect IAM authentication information"
    assert request_count(mock) == 1
    assert observed == [("list_sessions", "401")]
    assert TOKEN not in str(problem) and TOKEN not in repr(problem)


# --- errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status,code,msg,reason", [
    (400, "DBS.200022", "Instance not found.", "http"),
    (404, "APIGW.0101", "The API does not exist or has not been published.", "http"),
    (500, "DBS.05000000", "Server error.", "http"),
    (429, "APIG.0308", "The throttling threshold has been reached", "throttled"),
    (403, "APIGW.0302", "The IAM user is not authorized", "auth"),
])
async def test_error_bodies(api, mock, status, code, msg, reason):
    mock.get(page_url(0), status=status, payload={"error_code": code, "error_msg": msg})
    with pytest.raises(ApiError) as caught:
        await list_sessions(api, INSTANCE)
    problem = caught.value
    assert (problem.reason, problem.status, problem.error_code, problem.error_msg) == (reason, status, code, msg)
    assert f"status={status}" in str(problem)
    assert f"error_code={code}" in str(problem)
    assert request_count(mock) == 1


async def test_error_on_second_page_fails_the_poll(api, mock):
    mock.get(page_url(0), payload={"process_list": rows(0, 100)})
    mock.get(page_url(100), status=502, body="<html><body>Bad Gateway</body></html>", content_type="text/html")
    with pytest.raises(ApiError) as caught:
        await list_sessions(api, INSTANCE)
    assert (caught.value.reason, caught.value.status) == ("http", 502)
    assert "HTML" in caught.value.message


async def test_page_with_more_rows_than_limit(api, mock):
    mock.get(page_url(0), payload={"process_list": rows(0, 101)})
    with pytest.raises(ApiError) as caught:
        await list_sessions(api, INSTANCE)
    assert caught.value.reason == "bad_response"
    assert "101 rows" in caught.value.message
    assert caught.value.status == 200


@pytest.mark.parametrize("body,fragment", [
    (json.dumps({"sessions": []}), "no process_list"),
    (json.dumps({"process_list": None}), "no process_list"),
    (json.dumps({"process_list": {"id": "1"}}), "not a list"),
    (json.dumps({"process_list": "[]"}), "not a list"),
    (json.dumps([{"id": "1"}]), "not a JSON object"),
    (json.dumps("process_list"), "not a JSON object"),
    ("null", "not a JSON object"),
    ("{\"process_list\": [", "invalid JSON"),
    ("", "invalid JSON"),
    ("<html>oops</html>", "invalid JSON"),
    (b"\xff\xfe\x00garbage", "invalid JSON"),
])
async def test_malformed_bodies_are_bad_response(api, mock, body, fragment):
    mock.get(page_url(0), body=body)
    with pytest.raises(ApiError) as caught:
        await list_sessions(api, INSTANCE)
    assert caught.value.reason == "bad_response"
    assert fragment in caught.value.message
    assert caught.value.status == 200


async def test_rate_limiter_spaces_pages(transport, clock, mock):
    api = make_api(transport, clock, limiter=RateLimiter(2.0, clock))
    mock.get(page_url(0), payload={"process_list": rows(0, 100)})
    mock.get(page_url(100), payload={"process_list": rows(100, 100)})
    mock.get(page_url(200), payload={"process_list": []})
    task = asyncio.create_task(list_sessions(api, INSTANCE))
    start = clock.monotonic()
    await clock.advance(10)
    result = task.result()
    assert result.pages == 3
    # the first request goes at once, the next two 0.5 s apart
    assert clock.sleeps == [0.5, 0.5]
    assert clock.monotonic() - start == 10


@pytest.mark.parametrize("endpoint, expected", [
    ("http://[::1]:18081", "http://[::1]:18081/v3/p/x?limit=1"),
    ("https://gaussdb.cn-north-4.myhuaweicloud.com", "https://gaussdb.cn-north-4.myhuaweicloud.com/v3/p/x?limit=1"),
    ("http://127.0.0.1:8080/prefix/", "http://127.0.0.1:8080/prefix/v3/p/x?limit=1"),
])
def test_request_url_keeps_the_endpoint_authority_and_prefix(endpoint, expected):
    from htap_exporter.cloud.auth import OutgoingRequest
    assert str(OutgoingRequest("GET", URL(endpoint), "/v3/p/x").url("limit=1")) == expected
