"""Basic auth: bcrypt verified once per credential, cached under a keyed hash, never the password."""

from __future__ import annotations

import base64


from htap_exporter.web.basicauth import BasicAuthVerifier, parse_basic_auth
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
    assert checkpw.calls == 3  # an unknown user pays bcrypt too (no enumeration by timing)
    # A changed hash for the same user misses the cache: the old password stops working.
    users = {"alice": bcrypt_hash("new").encode()}
    assert not await verifier.verify(users, "alice", "right")
    assert await verifier.verify(users, "alice", "new")


async def test_the_cache_holds_no_password() -> None:
    verifier = BasicAuthVerifier()
    users = {"alice": bcrypt_hash("correct horse").encode()}
    assert await verifier.verify(users, "alice", "correct horse")
    for key in verifier._cache:
        assert b"correct horse" not in key and len(key) == 32
    other = BasicAuthVerifier()  # a new process: another key, other cache entries
    assert await other.verify(users, "alice", "correct horse")
    assert set(other._cache).isdisjoint(verifier._cache)


async def test_a_password_bcrypt_cannot_take_is_refused() -> None:
    verifier = BasicAuthVerifier()
    users = {"alice": bcrypt_hash("x").encode()}
    assert not await verifier.verify(users, "alice", "a\0b" * 40)
