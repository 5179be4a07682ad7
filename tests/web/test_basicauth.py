"""Basic auth: bcrypt verified once per credential, cached under a keyed hash, never the password."""

from __future__ import annotations

import asyncio
import base64
import threading

import bcrypt
import pytest

from htap_exporter.web.basicauth import MAX_PASSWORD_BYTES, BasicAuthVerifier, Busy, bcrypt_cost, parse_basic_auth
from tests.webtls import CountingCheck, bcrypt_hash


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_parse_basic_auth() -> None:
    assert parse_basic_auth(header("alice", "pa:ss wörd")) == ("alice", "pa:ss wörd")
    assert parse_basic_auth("basic " + base64.b64encode(b"a:").decode()) == ("a", "")
    for bad in (None, "", "Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        assert parse_basic_auth(bad) is None


async def test_right_wrong_unknown_and_caching() -> None:
    checkpw = CountingCheck()
    verifier = BasicAuthVerifier(checkpw)
    users = {"alice": bcrypt_hash("right").encode()}
    assert await verifier.verify(users, "alice", "right")
    assert checkpw.calls == 1
    for _ in range(5):
        assert await verifier.verify(users, "alice", "right")
    assert checkpw.calls == 1  # later scrapes do not pay bcrypt
    assert not await verifier.verify(users, "alice", "wrong")
    assert not await verifier.verify(users, "mallory", "right")
    assert checkpw.calls == 2 and verifier.checks == 3  # an unknown user pays bcrypt too (making the decoy)
    # A changed hash for the same user misses the cache: the old password stops working.
    users = {"alice": bcrypt_hash("new").encode()}
    assert not await verifier.verify(users, "alice", "right")
    assert await verifier.verify(users, "alice", "new")


async def test_the_cache_holds_no_password() -> None:
    verifier = BasicAuthVerifier()
    users = {"alice": bcrypt_hash("correct horse").encode()}
    assert await verifier.verify(users, "alice", "correct horse")
    assert not await verifier.verify(users, "alice", "correct horse!")
    keys = [*verifier._verified["alice"], *verifier._refused]
    assert len(keys) == 2
    for key in keys:
        assert b"correct horse" not in key and len(key) == 32
    other = BasicAuthVerifier()  # a new process: another key, other cache entries
    assert await other.verify(users, "alice", "correct horse")
    assert set(other._verified["alice"]).isdisjoint(keys)


async def test_a_password_bcrypt_cannot_take_is_refused() -> None:
    verifier = BasicAuthVerifier()
    users = {"alice": bcrypt_hash("x").encode()}
    assert not await verifier.verify(users, "alice", "a\0b" * 40)


class BlockingCheck(CountingCheck):
    """checkpw that waits for `go` (set from the test) before checking."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.started = threading.Event()

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.started.set()
        self.go.wait(10)
        return super().__call__(password, hashed)


async def test_an_unknown_user_costs_what_a_wrong_password_of_the_slowest_user_costs() -> None:
    costs: list[tuple[str, int]] = []

    def checkpw(password: bytes, hashed: bytes) -> bool:
        costs.append(("check", bcrypt_cost(hashed)))
        return bcrypt.checkpw(password, hashed)

    def hashpw(password: bytes, salt: bytes) -> bytes:
        costs.append(("hash", bcrypt_cost(salt)))
        return bcrypt.hashpw(password, salt)

    verifier = BasicAuthVerifier(checkpw, hashpw)
    users = {"fast": bcrypt_hash("a", 4).encode(), "slow": bcrypt_hash("b", 6).encode()}
    assert not await verifier.verify(users, "slow", "wrong")
    assert not await verifier.verify(users, "nobody", "x1")  # makes the decoy: one bcrypt at cost 6
    assert not await verifier.verify(users, "nobody", "x2")  # checks against it: one bcrypt at cost 6
    assert not await verifier.verify(users, "someone", "x3")
    assert costs == [("check", 6), ("hash", 6), ("check", 6), ("check", 6)]
    # Hashes changed to a higher cost: the decoy follows.
    users["slow"] = bcrypt_hash("b", 7).encode()
    costs.clear()
    assert not await verifier.verify(users, "nobody", "x4")
    assert not await verifier.verify(users, "slow", "x4")
    assert costs == [("hash", 7), ("check", 7)]


async def test_wrong_passwords_never_evict_the_verified_one() -> None:
    checkpw = CountingCheck()
    verifier = BasicAuthVerifier(checkpw)
    users = {"prometheus": bcrypt_hash("right").encode()}
    assert await verifier.verify(users, "prometheus", "right")
    for attempt in range(600):  # more than every cache size
        assert not await verifier.verify(users, "prometheus", f"wrong-{attempt}")
    calls = checkpw.calls
    assert await verifier.verify(users, "prometheus", "right")
    assert checkpw.calls == calls  # still cached


async def test_beyond_the_waiting_room_a_check_is_refused_at_once_and_a_cancelled_waiter_leaves() -> None:
    checkpw = BlockingCheck()
    verifier = BasicAuthVerifier(checkpw, max_waiting=3)
    users = {"u": bcrypt_hash("right").encode()}
    running = asyncio.create_task(verifier.verify(users, "u", "w0"))
    await asyncio.to_thread(checkpw.started.wait, 10)  # holds the bcrypt thread
    waiting = [asyncio.create_task(verifier.verify(users, "u", f"w{i}")) for i in range(1, 4)]
    await asyncio.sleep(0)
    with pytest.raises(Busy):
        await verifier.verify(users, "u", "w4")
    waiting[0].cancel()  # its client left and aiohttp cancelled the handler
    await asyncio.sleep(0)
    late = asyncio.create_task(verifier.verify(users, "u", "w5"))  # the freed place is taken
    await asyncio.sleep(0)
    with pytest.raises(Busy):
        await verifier.verify(users, "u", "w6")
    checkpw.go.set()
    assert [await task for task in (running, *waiting[1:], late)] == [False] * 4
    assert checkpw.calls == 4  # the cancelled one was never checked


async def test_a_request_whose_client_left_is_not_checked() -> None:
    checkpw = BlockingCheck()
    verifier = BasicAuthVerifier(checkpw)
    users = {"u": bcrypt_hash("right").encode()}
    running = asyncio.create_task(verifier.verify(users, "u", "w0"))
    await asyncio.to_thread(checkpw.started.wait, 10)
    gone = asyncio.create_task(verifier.verify(users, "u", "right", client_gone=lambda: True))
    await asyncio.sleep(0)
    checkpw.go.set()
    assert not await running and not await gone
    assert checkpw.calls == 1 and verifier.skipped == 1
    assert await verifier.verify(users, "u", "right")  # nothing wrong was remembered for it


async def test_the_lock_is_held_until_the_thread_ends_even_if_the_request_is_cancelled() -> None:
    checkpw = BlockingCheck()
    verifier = BasicAuthVerifier(checkpw)
    users = {"u": bcrypt_hash("right").encode()}
    running = asyncio.create_task(verifier.verify(users, "u", "w0"))
    await asyncio.to_thread(checkpw.started.wait, 10)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert verifier._lock.locked()  # one bcrypt at a time, whatever happens to the requests
    checkpw.go.set()
    assert await verifier.verify(users, "u", "right")


async def test_passwords_longer_than_bcrypt_reads_are_refused_whatever_the_bcrypt_version() -> None:
    checkpw = CountingCheck()
    verifier = BasicAuthVerifier(checkpw)
    exact = "é" * (MAX_PASSWORD_BYTES // 2)  # 72 bytes in UTF-8
    users = {"u": bcrypt_hash(exact).encode()}
    assert await verifier.verify(users, "u", exact)
    # bcrypt 4 would take the first 72 bytes and say yes; bcrypt 5 would raise.
    assert not await verifier.verify(users, "u", exact + "x")
    assert not await verifier.verify(users, "nobody", exact + "x")
    assert checkpw.calls == 1


async def test_a_refusal_for_a_cheaper_user_waits_as_long_as_one_at_the_highest_cost() -> None:
    """Whatever the users' costs: a wrong password of a cost-4 user takes what a check at the highest
    cost (10, an unknown user's decoy) takes, so neither the user nor the cost is told by timing.
    Time is simulated: a check at cost c takes 2**c ticks, as bcrypt's work doubles per cost."""
    clock = [0.0]
    slept: list[float] = []

    def checkpw(password: bytes, hashed: bytes) -> bool:
        clock[0] += 2 ** bcrypt_cost(hashed)
        return bcrypt.checkpw(password, hashed)

    def hashpw(password: bytes, salt: bytes) -> bytes:
        clock[0] += 2 ** bcrypt_cost(salt)
        return b"$2b$10$" + b"a" * 53

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    verifier = BasicAuthVerifier(checkpw, hashpw, now=lambda: clock[0], sleep=sleep)
    users = {"fast": bcrypt_hash("right", 4).encode(), "slow": b"$2b$10$" + b"b" * 53}
    timings = {}
    for user, password in (("fast", "wrong"), ("nobody", "x1"), ("nobody", "x2"), ("slow", "wrong")):
        started = clock[0]
        assert not await verifier.verify(users, user, password)
        timings[(user, password)] = clock[0] - started
    assert timings == {("fast", "wrong"): 2 ** 10, ("nobody", "x1"): 2 ** 10, ("nobody", "x2"): 2 ** 10,
                       ("slow", "wrong"): 2 ** 10}
    assert slept == [2 ** 10 - 2 ** 4]  # only the cheaper user's refusal waited
    started = clock[0]
    assert await verifier.verify(users, "fast", "right")
    assert clock[0] - started == 2 ** 4  # a right password never waits
