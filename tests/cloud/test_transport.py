"""Transport.send and error_from_response: every failure leaves as an ApiError with its reason."""

from __future__ import annotations

import asyncio
import email.utils
import json

import aiohttp
import pytest
from aioresponses import CallbackResult
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from htap_exporter.cloud.errors import REASONS
from htap_exporter.redact import Redactor
from htap_exporter.cloud.transport import (
    MAX_ERROR_BODY_BYTES,
    ApiError,
    Proxies,
    Response,
    Transport,
    error_from_response,
    parse_retry_after,
)

from tests.examples import examples
from tests.fakes import settle

URL_ = URL("https://gaussdb.cn-north-4.myhuaweicloud.com/v3/p/instances/i/htap/process?limit=100&offset=0")
CAP = 4096


def make_transport(http, observed, *, concurrency: int = 4, max_body_bytes: int = CAP) -> Transport:
    return Transport(http, asyncio.Semaphore(concurrency), 10.0, max_body_bytes,
                     lambda api, code, seconds: observed.append((api, code, seconds)))


@pytest.fixture
def transport(http, observed):
    return make_transport(http, observed)


async def send(transport: Transport) -> Response:
    return await transport.send("list_sessions", "GET", URL_, {"Content-Type": "application/json"})


async def failure(transport: Transport) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await send(transport)
    return caught.value


# --- classification of answers ----------------------------------------------------------------------

async def test_success_returns_the_response(transport, mock, observed):
    mock.get(URL_, status=200, body=b'{"process_list": []}', headers={"X-Request-Id": "abc"})
    response = await send(transport)
    assert response.status == 200
    assert response.body == b'{"process_list": []}'
    assert response.json() == {"process_list": []}
    assert response.headers["X-Request-Id"] == "abc"
    assert [(api, code) for api, code, _ in observed] == [("list_sessions", "200")]


@pytest.mark.parametrize("status,payload,reason", [
    (401, {"error_code": "APIG.0301", "error_msg": "Incorrect IAM authentication information"}, "auth"),
    (401, {"error_code": "APIGW.0301", "error_msg": "verify aksk signature fail"}, "auth"),
    (403, {"error_code": "APIGW.0302", "error_msg": "not authorized"}, "auth"),
    (401, None, "auth"),
    (429, None, "throttled"),
    (429, {"error_code": "APIG.0308", "error_msg": "The throttling threshold has been reached"}, "throttled"),
    (400, {"error_code": "APIG.0308", "error_msg": "throttled"}, "throttled"),
    (503, {"error_code": "APIGW.0308", "error_msg": "throttled"}, "throttled"),
    (401, {"error_code": "APIGW.0308", "error_msg": "throttled"}, "throttled"),
    (404, {"error_code": "APIGW.0101", "error_msg": "The API does not exist"}, "http"),
    (400, {"error_code": "DBS.200022", "error_msg": "Instance not found."}, "http"),
    (500, {"error_code": "DBS.05000000", "error_msg": "Server error"}, "http"),
    (502, None, "http"),
    (301, None, "http"),
])
async def test_status_classification(transport, mock, observed, status, payload, reason):
    body = json.dumps(payload) if payload is not None else ""
    mock.get(URL_, status=status, body=body, headers={"Location": "https://elsewhere.example/"})
    problem = await failure(transport)
    assert problem.reason == reason
    assert problem.status == status
    if payload is not None:
        assert problem.error_code == payload["error_code"]
        assert problem.error_msg == payload["error_msg"]
    else:
        assert problem.error_code is None and problem.error_msg is None
    assert [(api, code) for api, code, _ in observed] == [("list_sessions", str(status))]


@pytest.mark.parametrize("status", [404, 500, 502])
async def test_html_error_page_is_noted(transport, mock, status):
    mock.get(URL_, status=status, content_type="text/html",
             body="<!DOCTYPE html>\n<HTML><head><title>Bad Gateway</title></head><body>nginx</body></HTML>")
    problem = await failure(transport)
    assert problem.reason == "http"
    assert problem.status == status
    assert problem.message == f"HTTP {status} (HTML error page, e.g. from a gateway or proxy)"
    assert str(problem) == f"HTTP {status} (HTML error page, e.g. from a gateway or proxy) status={status}"


async def test_plain_text_error_is_not_called_html(transport, mock):
    mock.get(URL_, status=500, body="internal error", content_type="text/plain")
    problem = await failure(transport)
    assert problem.message == "HTTP 500"


async def test_retry_after_seconds_on_429(transport, mock):
    mock.get(URL_, status=429, headers={"Retry-After": "17"})
    problem = await failure(transport)
    assert (problem.reason, problem.retry_after) == ("throttled", 17.0)


# --- exchanges without an answer ---------------------------------------------------------------------

async def test_timeout(transport, mock, observed):
    mock.get(URL_, exception=asyncio.TimeoutError())
    problem = await failure(transport)
    assert problem.reason == "timeout"
    assert problem.status is None
    assert problem.message == "no answer within 10s"
    assert [(api, code) for api, code, _ in observed] == [("list_sessions", "timeout")]


async def test_server_timeout_error_is_a_timeout(transport, mock, observed):
    # aiohttp's own read timeout is both a ClientConnectionError and a TimeoutError
    mock.get(URL_, exception=aiohttp.ServerTimeoutError("Timeout on reading data from socket"))
    problem = await failure(transport)
    assert problem.reason == "timeout"
    assert observed[0][1] == "timeout"


@pytest.mark.parametrize("exception,name", [
    (aiohttp.ClientConnectionError("Connection refused"), "ClientConnectionError"),
    (aiohttp.ServerDisconnectedError(), "ServerDisconnectedError"),
    (ConnectionResetError(104, "Connection reset by peer"), "ConnectionResetError"),
    (ConnectionRefusedError(111, "Connection refused"), "ConnectionRefusedError"),
    (aiohttp.ClientPayloadError("Response payload is not completed"), "ClientPayloadError"),
    (aiohttp.ClientError("something else"), "ClientError"),
])
async def test_network_errors(transport, mock, observed, exception, name):
    mock.get(URL_, exception=exception)
    problem = await failure(transport)
    assert problem.reason == "network"
    assert problem.status is None
    assert problem.message.startswith(f"{name}: ")
    assert [(api, code) for api, code, _ in observed] == [("list_sessions", "error")]


async def test_unmatched_url_is_connection_refused(transport, mock):
    problem = await failure(transport)  # aioresponses refuses any unregistered URL
    assert problem.reason == "network"
    assert "Connection refused" in problem.message


# --- body size cap -------------------------------------------------------------------------------------

async def test_body_at_the_cap_is_accepted(transport, mock):
    body = b"x" * CAP
    mock.get(URL_, body=body)
    assert (await send(transport)).body == body


async def test_body_over_cap_without_content_length(transport, mock, observed):
    mock.get(URL_, body=b"x" * (CAP + 1))
    problem = await failure(transport)
    assert problem.reason == "bad_response"
    assert problem.status == 200
    assert problem.message == f"body exceeds the {CAP}-byte cap"
    assert [(api, code) for api, code, _ in observed] == [("list_sessions", "200")]


async def test_body_over_cap_by_content_length_is_refused_before_reading(transport, mock):
    mock.get(URL_, body=b"{}", headers={"Content-Length": str(10 * CAP)})
    problem = await failure(transport)
    assert problem.reason == "bad_response"
    assert problem.message == f"body of {10 * CAP} bytes exceeds the {CAP}-byte cap"


async def test_large_multi_chunk_body_over_cap(http, observed, mock):
    transport = make_transport(http, observed, max_body_bytes=100_000)
    mock.get(URL_, body=b"y" * 300_000)  # several 64 KiB chunks
    problem = await failure(transport)
    assert problem.reason == "bad_response"
    assert problem.message == "body exceeds the 100000-byte cap"


async def test_error_body_is_truncated_not_refused(http, observed, mock):
    transport = make_transport(http, observed, max_body_bytes=1024)
    big = json.dumps({"error_code": "DBS.05000000", "error_msg": "e" * 10}).encode() + b" " * (200 * 1024)
    mock.get(URL_, status=500, body=big, headers={"Content-Length": str(len(big))})
    problem = await failure(transport)
    # The error body cap is MAX_ERROR_BODY_BYTES, independent of max_body_bytes; the JSON is cut
    # off by the truncation (trailing spaces only), so the error fields still parse.
    assert problem.reason == "http"
    assert problem.status == 500
    assert problem.error_code == "DBS.05000000"


async def test_truncated_error_body_length(http, observed, mock):
    transport = make_transport(http, observed)
    mock.get(URL_, status=200, body=b"z" * (MAX_ERROR_BODY_BYTES + 10))
    # a 2xx body uses max_body_bytes, so it is refused, not truncated
    assert (await failure(transport)).reason == "bad_response"


# --- error_from_response -----------------------------------------------------------------------------

def test_error_from_response_iam_nested_error():
    body = json.dumps({"error": {"code": 401, "message": "The username or password is wrong.",
                                 "title": "Unauthorized"}}).encode()
    problem = error_from_response(Response(401, {}, body))
    assert (problem.reason, problem.status, problem.error_code, problem.error_msg) == (
        "auth", 401, "401", "The username or password is wrong.")


def test_error_from_response_odd_fields():
    body = json.dumps({"error_code": ["x"], "error_msg": 5}).encode()
    problem = error_from_response(Response(500, {}, body))
    assert (problem.error_code, problem.error_msg) == (None, None)
    long = json.dumps({"error_code": "C" * 500, "error_msg": "m" * 1000}).encode()
    problem = error_from_response(Response(500, {}, long))
    assert problem.error_code == "C" * 64
    assert problem.error_msg == "m" * 300


def test_error_from_response_retry_after_header_case_insensitive():
    problem = error_from_response(Response(503, {"retry-after": "5"}, b""))
    assert (problem.reason, problem.retry_after) == ("http", 5.0)
    problem = error_from_response(Response(429, {"RETRY-AFTER": "bogus"}, b""))
    assert (problem.reason, problem.retry_after) == ("throttled", None)


def test_error_from_response_non_utf8_body():
    problem = error_from_response(Response(502, {}, b"\xff\xfe<html>"))
    assert problem.reason == "http"
    assert problem.error_code is None


def test_api_error_rejects_unknown_reasons():
    with pytest.raises(AssertionError):
        ApiError("oops", "x")
    assert REASONS == ("auth", "throttled", "timeout", "network", "http", "bad_response")


def test_api_error_describe():
    problem = ApiError("http", "HTTP 400", status=400, error_code="DBS.200022", error_msg="Instance not found.")
    assert str(problem) == "HTTP 400 status=400 error_code=DBS.200022 error_msg='Instance not found.'"


# --- parse_retry_after ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("120", 120.0),
    (" 7 ", 7.0),
    ("0", 0.0),
    (None, None),
    ("", None),
    ("garbage", None),
    ("1.5", None),
    ("-5", None),
    ("Mon", None),
    ("Wed, 99 Oct 2015 07:28:00 GMT", None),
    ("\u00b2", None),  # a digit to str.isdigit, not to float()
])
def test_parse_retry_after_values(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date():
    now = 1_445_412_480.0  # 2015-10-21 07:28:00 UTC
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now=now) == 90.0
    # a date in the past means "now"
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now=now) == 0.0


@settings(max_examples=examples(300), deadline=None)
@given(st.one_of(st.text(max_size=40), st.from_regex(r"[A-Za-z]{3}, \d{1,2} [A-Za-z]{3} \d{1,5} \d\d:\d\d:\d\d [A-Z+-]{1,5}\d{0,4}")))
def test_parse_retry_after_never_raises(value):
    result = parse_retry_after(value, now=1_445_412_480.0)
    assert result is None or (isinstance(result, float) and result >= 0)


async def test_unicode_digit_retry_after_does_not_escape(transport, mock):
    mock.get(URL_, status=429, headers={"Retry-After": "\u00b2"})
    problem = await failure(transport)
    assert (problem.reason, problem.retry_after) == ("throttled", None)


# --- observer and concurrency cap -------------------------------------------------------------------

async def test_observer_sees_every_request(transport, mock, observed):
    mock.get(URL_, status=200, body=b"{}")
    mock.get(URL_, status=500, body=b"{}")
    mock.get(URL_, exception=asyncio.TimeoutError())
    mock.get(URL_, exception=aiohttp.ServerDisconnectedError())
    mock.get(URL_, status=200, body=b"x" * (CAP + 1))
    mock.get(URL_, status=429)
    for _ in range(6):
        try:
            await send(transport)
        except ApiError:
            pass
    assert [(api, code) for api, code, _ in observed] == [
        ("list_sessions", "200"), ("list_sessions", "500"), ("list_sessions", "timeout"),
        ("list_sessions", "error"), ("list_sessions", "200"), ("list_sessions", "429")]
    assert all(isinstance(seconds, float) and 0 <= seconds < 5 for _, _, seconds in observed)


async def test_semaphore_caps_requests_in_flight(http, observed, mock):
    transport = make_transport(http, observed, concurrency=2)
    release = asyncio.Event()
    in_flight = 0
    peak = 0
    started = 0

    async def slow(url, **kwargs):
        nonlocal in_flight, peak, started
        started += 1
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return CallbackResult(status=200, body=b"{}")

    mock.get(URL_, callback=slow, repeat=True)
    tasks = [asyncio.create_task(send(transport)) for _ in range(5)]
    await settle()
    assert (started, in_flight) == (2, 2)
    release.set()
    results = await asyncio.gather(*tasks)
    assert [r.status for r in results] == [200] * 5
    assert started == 5
    assert peak == 2
    assert len(observed) == 5


async def test_semaphore_released_after_failures(http, observed, mock):
    transport = make_transport(http, observed, concurrency=1)
    mock.get(URL_, exception=asyncio.TimeoutError())
    mock.get(URL_, status=500)
    mock.get(URL_, status=200, body=b"x" * (CAP + 1))
    mock.get(URL_, status=200, body=b"{}")
    for reason in ("timeout", "http", "bad_response"):
        assert (await failure(transport)).reason == reason
    assert (await asyncio.wait_for(send(transport), 5)).status == 200


async def test_echoed_secret_is_masked_before_the_message_is_cut(http, mock):
    token = "MIIechoed" + "x" * 400  # longer than the kept part of error_msg
    redactor = Redactor()
    redactor.add(token)
    transport = Transport(http, asyncio.Semaphore(1), 5.0, CAP, redact=redactor.redact)
    mock.get(URL_, status=401, payload={"error_code": "APIG.0301", "error_msg": f"bad token {token}"})
    with pytest.raises(ApiError) as caught:
        await transport.send("list_sessions", "GET", URL_, {})
    assert caught.value.error_msg == "bad token ********"
    assert "MIIechoed" not in str(caught.value)


async def test_request_slots_are_fifo_and_a_cancelled_waiter_costs_nothing():
    from htap_exporter.cloud.transport import RequestSlots
    slots = RequestSlots(2)
    order: list[int] = []
    release = asyncio.Event()

    async def user(n: int) -> None:
        async with slots:
            order.append(n)
            await release.wait()

    holders = [asyncio.create_task(user(n)) for n in range(2)]
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(user(n)) for n in range(2, 20_002)]
    await asyncio.sleep(0)
    assert order == [0, 1] and slots.locked()
    for task in waiters[1:-1]:  # all but the first and the last give up
        task.cancel()
    await asyncio.gather(*waiters[1:-1], return_exceptions=True)
    release.set()
    await asyncio.gather(*holders, waiters[0], waiters[-1])
    assert order == [0, 1, 2, 20_001]
    assert not slots.locked()


async def take_a_slot(slots, order: list[str], name: str, continuing: bool) -> None:
    """Wait for a slot (for a walk's next request when `continuing`), note `name`, give it back."""
    await slots.acquire(continuing)
    order.append(name)
    slots.release()


async def test_behind_a_backlog_request_slots_serve_a_walk_under_way_first(monkeypatch):
    from htap_exporter.cloud import transport as transport_module
    from htap_exporter.cloud.transport import RequestSlots
    monkeypatch.setattr(transport_module, "BACKLOG", 2)
    slots = RequestSlots(1)
    order: list[str] = []
    await slots.acquire()
    waiters = [asyncio.create_task(take_a_slot(slots, order, name, continuing)) for name, continuing in
               (("first A", False), ("first B", False), ("next A", True), ("first C", False), ("next B", True))]
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(take_a_slot(slots, order, "next cancelled", True))
    await asyncio.sleep(0)
    cancelled.cancel()
    slots.release()
    await asyncio.gather(*waiters)
    # "next A" came behind two first pages (a backlog): first; "next B" too (three)
    assert order == ["next A", "next B", "first A", "first B", "first C"]
    assert not slots.locked()


async def test_without_a_backlog_request_slots_are_first_come_first_served():
    from htap_exporter.cloud.transport import BACKLOG, RequestSlots
    slots = RequestSlots(1)
    order: list[str] = []
    await slots.acquire()
    names = [("first A", False), ("next A", True), ("first B", False), ("next B", True)]
    assert len(names) < BACKLOG
    waiters = [asyncio.create_task(take_a_slot(slots, order, name, continuing)) for name, continuing in names]
    await asyncio.sleep(0)
    slots.release()
    await asyncio.gather(*waiters)
    assert order == [name for name, _ in names]


async def test_the_transport_asks_request_slots_for_a_continuing_slot(mock, http, monkeypatch):
    from htap_exporter.cloud import transport as transport_module
    from htap_exporter.cloud.transport import RequestSlots
    monkeypatch.setattr(transport_module, "BACKLOG", 1)
    slots = RequestSlots(1)
    transport = Transport(http, slots, 5.0, CAP)
    mock.get(URL_, status=200, body=b"{}", repeat=True)
    order: list[str] = []

    async def prepared() -> tuple[URL, dict[str, str]]:
        return URL_, {}

    async def send(name: str, continuing: bool) -> None:
        await transport.send_prepared("list_sessions", "GET", prepared, continuing=continuing)
        order.append(name)

    await slots.acquire()  # every request waits
    tasks = [asyncio.create_task(send("first", False)), asyncio.create_task(send("next", True))]
    while not (slots._waiters and slots._continuing):  # both queued
        await asyncio.sleep(0)
    slots.release()
    await asyncio.gather(*tasks)
    assert order == ["next", "first"]


async def test_a_waiter_cancelled_after_being_handed_a_slot_passes_it_on():
    from htap_exporter.cloud.transport import RequestSlots
    slots = RequestSlots(1)
    async with slots:
        first = asyncio.create_task(slots.__aenter__())
        second = asyncio.create_task(slots.__aenter__())
        await asyncio.sleep(0)
    first.cancel()  # handed the slot by the release above, cancelled before it ran
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)  # the slot went on to the next waiter
    assert slots.locked()


def test_proxies_from_the_environment_as_aiohttp_trust_env_reads_them(tmp_path, monkeypatch) -> None:
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine proxy-b.example login bob password b-secret\n")
    netrc_file.chmod(0o600)
    for name in ("http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "ftp_proxy", "all_proxy", "no_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "WS_PROXY", "WSS_PROXY", "FTP_PROXY", "ALL_PROXY", "NO_PROXY",
                 "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(netrc_file))
    monkeypatch.setenv("HTTP_PROXY", "http://alice:a-secret@proxy-a.example:3128")
    monkeypatch.setenv("WS_PROXY", "http://proxy-b.example:3128")
    monkeypatch.setenv("WSS_PROXY", "https://proxy-c.example:3128")  # aiohttp cannot use an https:// proxy
    monkeypatch.setenv("FTP_PROXY", "http://proxy-d.example:3128")
    proxies = Proxies.from_env()
    assert proxies.for_url(URL("http://api.example/x")) == (URL("http://proxy-a.example:3128"),
                                                             aiohttp.BasicAuth.from_url(URL("http://alice:a-secret@x")))
    assert proxies.for_url(URL("ws://api.example/x")) == (URL("http://proxy-b.example:3128"),
                                                           aiohttp.BasicAuth.from_url(URL("http://bob:b-secret@x")))
    assert proxies.for_url(URL("wss://api.example/x")) == (None, None)
    assert proxies.for_url(URL("https://api.example/x")) == (None, None)
