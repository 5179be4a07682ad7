"""AuthGate (back-off after rejected credentials), PasswordAuthenticator (IAM token cache and
refresh), FileBackedSecret (rotated secret files), and that secrets never leak into errors."""

from __future__ import annotations

import asyncio
import datetime
import json
import os

import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from htap_exporter.collectors.sessions.fetch import list_sessions
from htap_exporter.cloud.client import ProjectClient
from htap_exporter.cloud.auth import (
    AUTH_PAUSE_MAX,
    AuthGate,
    FileBackedSecret,
    OutgoingRequest,
    PasswordAuthenticator,
    StaticTokenAuthenticator,
    auth_pause,
    token_refresh_delay,
)
from htap_exporter.config import PasswordAuth, Secret, SecretSource, TokenAuth
from htap_exporter.redact import Redactor
from htap_exporter.cloud.transport import ApiError

from tests.fakes import FakeClock, settle

ENDPOINT = "https://gaussdb.cn-north-4.myhuaweicloud.com"
IAM = "https://iam.cn-north-4.myhuaweicloud.com"
IAM_URL = f"{IAM}/v3/auth/tokens?nocatalog=true"
PROJECT = "054e292c9880d4992f02c0196d3ea468"
INSTANCE = "af315b8e6aaa41799bd9a31f2de15abcin17"
PAGE = f"{ENDPOINT}/v3/{PROJECT}/instances/{INSTANCE}/htap/process?limit=100&offset=0"
STATIC_TOKEN = "MIIstatic-token-wrong-0123456789"
PASSWORD = "Pa55w0rd-very-secret!"
DAY = 24 * 3600.0

EMPTY_PAGE = {"process_list": []}
UNAUTHORIZED = {"error_code": "APIG.0301", "error_msg": "Incorrect IAM authentication information: decrypt token fail"}


def count(mock: aioresponses, method: str, url: str) -> int:
    return len(mock.requests.get((method, URL(url)), []))


def iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def redactor():
    return Redactor()


def static_api(transport, clock, token: str = STATIC_TOKEN) -> ProjectClient:
    auth = StaticTokenAuthenticator(TokenAuth(token=SecretSource(value=Secret(token))), clock, Redactor())
    return ProjectClient(endpoint=ENDPOINT, project_id=PROJECT, auth=auth, transport=transport, max_pages=5)


async def outcome(coroutine) -> ApiError | None:
    try:
        await coroutine
    except ApiError as problem:
        return problem
    return None


# --- AuthGate ------------------------------------------------------------------------------------------

def test_auth_pause_sequence():
    assert [auth_pause(n) for n in range(1, 9)] == [15, 30, 60, 120, 240, 300, 300, 300]
    assert auth_pause(1000) == AUTH_PAUSE_MAX == 300


async def test_rejection_fails_fast_until_the_pause_ends(transport, clock, mock):
    api = static_api(transport, clock)
    mock.get(PAGE, status=401, payload=UNAUTHORIZED, repeat=True)
    start = clock.monotonic()
    first = await outcome(list_sessions(api, INSTANCE))
    assert (first.reason, first.status, first.error_code) == ("auth", 401, "APIG.0301")
    assert count(mock, "GET", PAGE) == 1
    assert api._auth.gate.blocked_until == start + 15

    clock.tick(14.5)
    blocked = await outcome(list_sessions(api, INSTANCE))
    assert blocked.reason == "auth"
    assert blocked.status is None
    assert "rejected 1 time(s) in a row" in blocked.message
    assert count(mock, "GET", PAGE) == 1  # nothing was sent

    clock.tick(0.5)  # the pause is over: one more try, which fails again
    again = await outcome(list_sessions(api, INSTANCE))
    assert again.status == 401
    assert count(mock, "GET", PAGE) == 2
    assert api._auth.gate.blocked_until == start + 15 + 30


async def test_pauses_grow_to_five_minutes(transport, clock, mock):
    api = static_api(transport, clock)
    gate = api._auth.gate
    mock.get(PAGE, status=401, payload=UNAUTHORIZED, repeat=True)
    pauses = []
    for _ in range(7):
        clock.now = max(clock.now, gate.blocked_until)
        problem = await outcome(list_sessions(api, INSTANCE))
        assert problem.status == 401
        pauses.append(gate.blocked_until - clock.now)
    assert pauses == [15, 30, 60, 120, 240, 300, 300]
    assert gate.failures == 7
    assert count(mock, "GET", PAGE) == 7


async def test_wrong_key_with_five_instances_polling_every_second(transport, clock, mock):
    """A wrong key, 5 instances of the project each polling every 1 s (no poller back-off at all):
    the gate alone lets 3 requests through in the first minute and 6 in ten minutes."""
    api = static_api(transport, clock)
    sent_at: list[float] = []

    def rejected(url, **kwargs):
        sent_at.append(clock.monotonic() - start)
        return CallbackResult(status=401, payload=UNAUTHORIZED)

    mock.get(PAGE, callback=rejected, repeat=True)
    start = clock.monotonic()
    failures = {"auth": 0}

    async def instance_loop() -> None:
        while True:
            problem = await outcome(list_sessions(api, INSTANCE))
            failures[problem.reason] = failures.get(problem.reason, 0) + 1
            await clock.sleep(1)

    tasks = [asyncio.create_task(instance_loop()) for _ in range(5)]
    try:
        await clock.run_until(start + 59.5)
        assert sent_at == [0, 15, 45]
        await clock.run_until(start + 599.5)
        assert sent_at == [0, 15, 45, 105, 225, 465]
        assert failures == {"auth": 5 * 600}  # every poll failed, almost all without a request
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_unverified_gate_lets_one_request_through_at_a_time(transport, clock, mock):
    api = static_api(transport, clock, token="good-token-0123456789")
    release = asyncio.Event()
    state = {"in_flight": 0, "peak": 0, "started": 0}

    async def slow(url, **kwargs):
        state["started"] += 1
        state["in_flight"] += 1
        state["peak"] = max(state["peak"], state["in_flight"])
        await release.wait()
        state["in_flight"] -= 1
        return CallbackResult(status=200, payload=EMPTY_PAGE)

    mock.get(PAGE, callback=slow, repeat=True)
    tasks = [asyncio.create_task(list_sessions(api, INSTANCE)) for _ in range(5)]
    await settle()
    assert (state["started"], state["in_flight"]) == (1, 1)
    assert api._auth.gate.verified is False
    release.set()
    await asyncio.gather(*tasks)
    assert state["peak"] == 1
    assert api._auth.gate.verified is True

    # once verified, requests run side by side
    release.clear()
    state.update(started=0, peak=0)
    tasks = [asyncio.create_task(list_sessions(api, INSTANCE)) for _ in range(3)]
    await settle()
    assert (state["started"], state["in_flight"]) == (3, 3)
    release.set()
    await asyncio.gather(*tasks)
    assert state["peak"] == 3


async def test_success_resets_the_gate(transport, clock, mock):
    api = static_api(transport, clock)
    gate = api._auth.gate
    mock.get(PAGE, status=401, payload=UNAUTHORIZED)
    mock.get(PAGE, status=401, payload=UNAUTHORIZED)
    mock.get(PAGE, status=200, payload=EMPTY_PAGE)  # e.g. the key was fixed in the meantime
    mock.get(PAGE, status=401, payload=UNAUTHORIZED)
    await outcome(list_sessions(api, INSTANCE))
    clock.now = gate.blocked_until
    await outcome(list_sessions(api, INSTANCE))
    assert gate.failures == 2
    clock.now = gate.blocked_until
    assert await outcome(list_sessions(api, INSTANCE)) is None
    assert (gate.failures, gate.verified) == (0, True)
    # the next rejection starts again at the first, shortest pause
    assert (await outcome(list_sessions(api, INSTANCE))).reason == "auth"
    assert gate.blocked_until == clock.now + 15
    assert gate.verified is False


async def test_other_errors_do_not_pause(transport, clock, mock):
    api = static_api(transport, clock)
    mock.get(PAGE, status=500, payload={"error_code": "DBS.05000000", "error_msg": "x"})
    mock.get(PAGE, status=429)
    mock.get(PAGE, status=200, payload=EMPTY_PAGE)
    assert (await outcome(list_sessions(api, INSTANCE))).reason == "http"
    assert (await outcome(list_sessions(api, INSTANCE))).reason == "throttled"
    assert await outcome(list_sessions(api, INSTANCE)) is None
    assert api._auth.gate.blocked_until == 0.0
    assert count(mock, "GET", PAGE) == 3


async def test_gate_directly_with_cancellation():
    clock = FakeClock()
    gate = AuthGate(clock)
    entered = asyncio.Event()

    async def hold():
        async with gate.attempt():
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold())
    await entered.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # a cancelled attempt is neither a success nor a failure, and releases the lock
    assert (gate.failures, gate.verified, gate.blocked_until) == (0, False, 0.0)
    async with gate.attempt():
        pass
    assert gate.verified is True


async def test_forbidden_instance_does_not_pause_the_project(transport, clock, mock):
    api = static_api(transport, clock)
    mock.get(PAGE, status=403, payload={"error_code": "DBS.200019", "error_msg": "No permission."})
    mock.get(PAGE, status=200, payload=EMPTY_PAGE)
    problem = await outcome(list_sessions(api, INSTANCE))
    assert (problem.reason, problem.status) == ("auth", 403)
    assert api._auth.gate.blocked_until == 0.0 and api._auth.gate.failures == 0
    assert await outcome(list_sessions(api, INSTANCE)) is None  # the next poll goes out at once


async def _verdicts(gate: AuthGate, outcomes: list) -> list:
    """Runs one attempt per outcome concurrently (all started before any ends), in that finishing order."""
    release = [asyncio.Event() for _ in outcomes]
    started = asyncio.Event()
    running = 0

    async def attempt(index: int, result) -> None:
        nonlocal running
        async with gate.attempt():
            running += 1
            if running == len(outcomes):
                started.set()
            await release[index].wait()
            if result is not None:
                raise result

    tasks = [asyncio.create_task(attempt(i, r)) for i, r in enumerate(outcomes)]
    await started.wait()
    for event in release:
        event.set()
        await asyncio.sleep(0)
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_concurrent_rejections_count_once():
    clock = FakeClock()
    gate = AuthGate(clock)
    gate.verified = True  # known-good credentials: requests run in parallel
    await _verdicts(gate, [ApiError("auth", "rejected", status=401) for _ in range(8)])
    assert gate.failures == 1
    assert gate.blocked_until == clock.now + 15


async def test_success_racing_a_rejection_does_not_unblock():
    clock = FakeClock()
    gate = AuthGate(clock)
    gate.verified = True
    await _verdicts(gate, [ApiError("auth", "rejected", status=401), None])
    assert (gate.failures, gate.verified, gate.blocked_until) == (1, False, clock.now + 15)


# --- PasswordAuthenticator ----------------------------------------------------------------------------

class Iam:
    """Mocked IAM: issues tok-1, tok-2, ... with a chosen life, or a chosen failure."""

    def __init__(self, mock: aioresponses, clock: FakeClock, life: float | None = DAY) -> None:
        self.clock = clock
        self.life = life
        self.issued: list[str] = []
        self.fail_with: CallbackResult | None = None
        mock.post(IAM_URL, callback=self, repeat=True)

    def __call__(self, url, **kwargs):
        if self.fail_with is not None:
            return self.fail_with
        token = f"tok-{len(self.issued) + 1}-MIIabcdefghijklmnop"
        self.issued.append(token)
        body = {"token": {"expires_at": iso(self.clock.time() + self.life)}} if self.life is not None else {}
        return CallbackResult(status=201, payload=body, headers={"X-Subject-Token": token})


def password_auth(transport, clock, redactor) -> PasswordAuthenticator:
    config = PasswordAuth(domain="acme-account", username="exporter",
                          password=SecretSource(value=Secret(PASSWORD)))
    return PasswordAuthenticator(config, PROJECT, IAM, transport, clock, redactor)


def request() -> OutgoingRequest:
    return OutgoingRequest(method="GET", endpoint=URL(ENDPOINT),
                           path=f"/v3/{PROJECT}/instances/{INSTANCE}/htap/process",
                           params=[("offset", "0"), ("limit", "100")], headers={"X-Language": "en-us"})


async def test_iam_request_shape(transport, clock, redactor, mock):
    iam = Iam(mock, clock)
    auth = password_auth(transport, clock, redactor)
    url, headers = await auth.prepare(request())
    assert str(url) == PAGE
    assert headers == {"X-Language": "en-us", "X-Auth-Token": iam.issued[0]}
    [call] = mock.requests[("POST", URL(IAM_URL))]
    assert json.loads(call.kwargs["data"]) == {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "exporter", "password": PASSWORD, "domain": {"name": "acme-account"}}}},
        "scope": {"project": {"id": PROJECT}},
    }}
    assert call.kwargs["headers"]["Content-Type"].startswith("application/json")
    sent = transport.sent[0]
    assert (sent.api, sent.method, str(sent.url)) == ("iam_token", "POST", IAM_URL)
    assert redactor.redact(f"token {iam.issued[0]}") == "token ********"


async def test_token_cached_and_shared(transport, clock, redactor, mock):
    iam = Iam(mock, clock)
    auth = password_auth(transport, clock, redactor)
    results = await asyncio.gather(*(auth.prepare(request()) for _ in range(20)))
    assert count(mock, "POST", IAM_URL) == 1
    assert auth.token_requests == 1
    assert {headers["X-Auth-Token"] for _, headers in results} == {iam.issued[0]}
    clock.tick(3600)
    await auth.prepare(request())
    assert count(mock, "POST", IAM_URL) == 1


@pytest.mark.parametrize("life,expected", [
    (DAY, 0.8 * DAY),  # 80 % (19.2 h) comes before "1 h before expiry" (23 h)
    (5 * 3600.0, 4 * 3600.0),  # both rules agree
    (2 * 3600.0, 3600.0),  # 1 h before expiry comes first
    (3600.0, 2880.0),  # at most an hour left: 80 %
    (600.0, 480.0),
])
def test_token_refresh_delay(life, expected):
    assert token_refresh_delay(life) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("life,refresh_after", [(DAY, 69120.0), (2 * 3600.0, 3600.0), (1800.0, 1440.0)])
async def test_token_refreshed_on_schedule(transport, clock, redactor, mock, life, refresh_after):
    iam = Iam(mock, clock, life=life)
    auth = password_auth(transport, clock, redactor)
    start = clock.monotonic()
    await auth.prepare(request())
    clock.now = start + refresh_after - 0.5
    _, headers = await auth.prepare(request())
    assert headers["X-Auth-Token"] == iam.issued[0]
    assert count(mock, "POST", IAM_URL) == 1
    clock.now = start + refresh_after
    _, headers = await auth.prepare(request())
    assert headers["X-Auth-Token"] == iam.issued[1]
    assert count(mock, "POST", IAM_URL) == 2


async def test_token_without_expiry_lives_a_day(transport, clock, redactor, mock):
    Iam(mock, clock, life=None)
    auth = password_auth(transport, clock, redactor)
    start = clock.monotonic()
    await auth.prepare(request())
    clock.now = start + 69119
    await auth.prepare(request())
    assert count(mock, "POST", IAM_URL) == 1
    clock.now = start + 69120
    await auth.prepare(request())
    assert count(mock, "POST", IAM_URL) == 2


async def test_expired_token_is_an_auth_error(transport, clock, redactor, mock):
    Iam(mock, clock, life=-60)
    auth = password_auth(transport, clock, redactor)
    problem = await outcome(auth.prepare(request()))
    assert problem.reason == "auth"
    assert "already expired" in problem.message


async def test_iam_answer_without_token_header(transport, clock, redactor, mock):
    mock.post(IAM_URL, status=201, payload={"token": {"expires_at": iso(clock.time() + DAY)}})
    auth = password_auth(transport, clock, redactor)
    problem = await outcome(auth.prepare(request()))
    assert (problem.reason, problem.status) == ("bad_response", 201)


def password_api(auth: PasswordAuthenticator, transport) -> ProjectClient:
    return ProjectClient(endpoint=ENDPOINT, project_id=PROJECT, auth=auth, transport=transport, max_pages=5)


def session_tokens(transport) -> list[str]:
    return [s.headers["X-Auth-Token"] for s in transport.sent if s.api == "list_sessions"]


async def test_401_refreshes_once_and_retries_once(transport, clock, redactor, mock):
    iam = Iam(mock, clock)
    api = password_api(password_auth(transport, clock, redactor), transport)
    mock.get(PAGE, status=401, payload=UNAUTHORIZED)  # e.g. the token was revoked early
    mock.get(PAGE, status=200, payload={"process_list": [{"id": "1"}]})
    result = await list_sessions(api, INSTANCE)
    assert [s.id for s in result.sessions] == ["1"]
    assert count(mock, "GET", PAGE) == 2
    assert count(mock, "POST", IAM_URL) == 2
    assert session_tokens(transport) == iam.issued == [iam.issued[0], iam.issued[1]]
    assert api._auth.gate.failures == 0


async def test_second_401_is_not_retried_again(transport, clock, redactor, mock):
    Iam(mock, clock)
    api = password_api(password_auth(transport, clock, redactor), transport)
    mock.get(PAGE, status=401, payload=UNAUTHORIZED, repeat=True)
    problem = await outcome(list_sessions(api, INSTANCE))
    assert (problem.reason, problem.status) == ("auth", 401)
    assert count(mock, "GET", PAGE) == 2
    assert count(mock, "POST", IAM_URL) == 2
    assert api._auth.gate.failures == 1
    # and then the gate holds further polls back
    assert (await outcome(list_sessions(api, INSTANCE))).status is None
    assert count(mock, "GET", PAGE) == 2


async def test_concurrent_401s_cause_one_refresh(transport, clock, redactor, mock):
    iam = Iam(mock, clock)
    api = password_api(password_auth(transport, clock, redactor), transport)
    mock.get(PAGE, status=200, payload=EMPTY_PAGE)
    await list_sessions(api, INSTANCE)  # warm up: token fetched, credentials verified
    assert count(mock, "POST", IAM_URL) == 1

    release = asyncio.Event()
    held = {"n": 0}

    async def revoked_then_fine(url, **kwargs):
        if kwargs["headers"]["X-Auth-Token"] == iam.issued[0]:
            held["n"] += 1
            await release.wait()
            return CallbackResult(status=401, payload=UNAUTHORIZED)
        return CallbackResult(status=200, payload=EMPTY_PAGE)

    mock.get(PAGE, callback=revoked_then_fine, repeat=True)
    tasks = [asyncio.create_task(list_sessions(api, INSTANCE)) for _ in range(5)]
    await settle()
    assert held["n"] == 5  # all five sent with the old token before any 401 came back
    release.set()
    await asyncio.gather(*tasks)
    assert count(mock, "POST", IAM_URL) == 2
    assert count(mock, "GET", PAGE) == 1 + 5 + 5
    assert session_tokens(transport) == [iam.issued[0]] * 6 + [iam.issued[1]] * 5


async def test_iam_rejection_is_auth_error(transport, clock, redactor, mock):
    iam = Iam(mock, clock)
    iam.fail_with = CallbackResult(status=401, payload={"error": {
        "code": 401, "message": "The username or password is wrong.", "title": "Unauthorized"}})
    api = password_api(password_auth(transport, clock, redactor), transport)
    problem = await outcome(list_sessions(api, INSTANCE))
    assert (problem.reason, problem.status, problem.error_code) == ("auth", 401, "401")
    assert problem.error_msg == "The username or password is wrong."
    assert count(mock, "GET", PAGE) == 0
    assert count(mock, "POST", IAM_URL) == 1
    # a wrong password is not retried during the pause either (IAM locks users too)
    clock.tick(10)
    assert (await outcome(list_sessions(api, INSTANCE))).status is None
    assert count(mock, "POST", IAM_URL) == 1
    clock.tick(5)
    assert (await outcome(list_sessions(api, INSTANCE))).status == 401
    assert count(mock, "POST", IAM_URL) == 2


async def test_iam_throttling_is_not_an_auth_failure(transport, clock, redactor, mock):
    iam = Iam(mock, clock)
    iam.fail_with = CallbackResult(status=429, payload={"error_code": "APIGW.0308", "error_msg": "slow down"},
                                   headers={"Retry-After": "3"})
    api = password_api(password_auth(transport, clock, redactor), transport)
    problem = await outcome(list_sessions(api, INSTANCE))
    assert (problem.reason, problem.retry_after) == ("throttled", 3.0)
    assert api._auth.gate.failures == 0


# --- FileBackedSecret ----------------------------------------------------------------------------------

def write(path, text: str, mtime: float) -> None:
    path.write_text(text + "\n", encoding="utf-8")
    os.utime(path, (mtime, mtime))


def test_file_secret_rereads_a_rotated_file(tmp_path):
    path = tmp_path / "token"
    write(path, "first-secret-value", 1_700_000_000)
    redactor = Redactor()
    secret = FileBackedSecret(SecretSource(file=path), redactor)
    assert secret.get() == "first-secret-value"
    write(path, "second-secret-value", 1_700_000_100)
    assert secret.get() == "second-secret-value"
    assert redactor.redact("first-secret-value second-secret-value") == "******** ********"


def test_file_secret_not_reread_when_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "token"
    write(path, "stable-secret-value", 1_700_000_000)
    source = SecretSource(file=path)
    secret = FileBackedSecret(source, Redactor())
    reads = []
    original = SecretSource.read
    monkeypatch.setattr(SecretSource, "read", lambda self: reads.append(1) or original(self))
    for _ in range(3):
        assert secret.get() == "stable-secret-value"
    assert len(reads) == 1


def test_file_secret_deleted(tmp_path):
    path = tmp_path / "password"
    write(path, "deleted-secret-value", 1_700_000_000)
    secret = FileBackedSecret(SecretSource(file=path), Redactor())
    assert secret.get() == "deleted-secret-value"
    path.unlink()
    with pytest.raises(ApiError) as caught:
        secret.get()
    assert caught.value.reason == "auth"
    assert str(path) in caught.value.message
    assert "No such file or directory" in caught.value.message
    assert "deleted-secret-value" not in str(caught.value) and "deleted-secret-value" not in repr(caught.value)


def test_file_secret_emptied(tmp_path):
    path = tmp_path / "password"
    write(path, "  ", 1_700_000_000)
    with pytest.raises(ApiError) as caught:
        FileBackedSecret(SecretSource(file=path), Redactor()).get()
    assert caught.value.reason == "auth"
    assert "is empty" in caught.value.message


def test_inline_secret(tmp_path):
    assert FileBackedSecret(SecretSource(value=Secret("inline-secret")), Redactor()).get() == "inline-secret"


async def test_static_token_file_rotation_reaches_the_header(tmp_path, transport, clock, mock):
    path = tmp_path / "token"
    write(path, "rotated-token-one", 1_700_000_000)
    auth = StaticTokenAuthenticator(TokenAuth(token=SecretSource(file=path)), clock, Redactor())
    api = ProjectClient(endpoint=ENDPOINT, project_id=PROJECT, auth=auth, transport=transport, max_pages=5)
    mock.get(PAGE, status=200, payload=EMPTY_PAGE, repeat=True)
    await list_sessions(api, INSTANCE)
    write(path, "rotated-token-two!", 1_700_000_500)
    await list_sessions(api, INSTANCE)
    path.unlink()
    problem = await outcome(list_sessions(api, INSTANCE))
    assert problem.reason == "auth"
    assert session_tokens(transport) == ["rotated-token-one", "rotated-token-two!"]
    assert "rotated-token" not in str(problem)


async def test_rewritten_token_file_is_tried_at_once_despite_the_pause(tmp_path, transport, clock, mock):
    path = tmp_path / "token"
    write(path, "rejected-token-one", 1_700_000_000)
    auth = StaticTokenAuthenticator(TokenAuth(token=SecretSource(file=path)), clock, Redactor())
    api = ProjectClient(endpoint=ENDPOINT, project_id=PROJECT, auth=auth, transport=transport, max_pages=5)
    mock.get(PAGE, status=401, payload=UNAUTHORIZED)
    mock.get(PAGE, status=200, payload=EMPTY_PAGE, repeat=True)
    assert (await outcome(list_sessions(api, INSTANCE))).status == 401
    clock.tick(1)
    blocked = await outcome(list_sessions(api, INSTANCE))
    assert blocked.reason == "auth" and blocked.status is None  # same credentials: still paused
    write(path, "corrected-token-two", 1_700_000_100)
    assert await outcome(list_sessions(api, INSTANCE)) is None  # new credentials: tried at once
    assert session_tokens(transport) == ["rejected-token-one", "corrected-token-two"]
    assert auth.gate.failures == 0 and auth.gate.verified


# --- secrets never in errors or reprs -----------------------------------------------------------------

async def test_secrets_never_in_errors_or_reprs(transport, clock, redactor, mock, tmp_path):
    iam = Iam(mock, clock)
    auth = password_auth(transport, clock, redactor)
    api = password_api(auth, transport)
    problems: list[BaseException] = []
    mock.get(PAGE, status=401, payload=UNAUTHORIZED, repeat=True)
    problems.append(await outcome(list_sessions(api, INSTANCE)))
    clock.tick(15)
    iam.fail_with = CallbackResult(status=401, payload={"error": {"code": 401, "message": "wrong password"}})
    problems.append(await outcome(list_sessions(api, INSTANCE)))
    missing = tmp_path / "gone"
    write(missing, PASSWORD, 1_700_000_000)
    secret = FileBackedSecret(SecretSource(file=missing), Redactor())
    secret.get()
    missing.unlink()
    problems.append(_raised(secret.get))
    assert all(isinstance(p, ApiError) for p in problems)
    secrets = [PASSWORD, *iam.issued]
    assert len(iam.issued) == 2
    texts = [str(p) for p in problems] + [repr(p) for p in problems] + [p.describe() for p in problems]
    texts += [repr(auth), repr(auth._config), repr(auth._config.password), str(auth._config.password.value),
              repr(TokenAuth(token=SecretSource(value=Secret(STATIC_TOKEN))))]
    for text in texts:
        for secret_value in secrets + [STATIC_TOKEN]:
            assert secret_value not in text, text


def _raised(function) -> BaseException | None:
    try:
        function()
    except BaseException as problem:  # noqa: BLE001 - collected for inspection
        return problem
    return None
