"""HTTP basic auth against the web config's bcrypt hashes, without paying bcrypt on every scrape.

bcrypt is slow on purpose (cost 10 is ~70 ms), and Prometheus sends the same credentials on every
scrape. So each verified outcome is remembered under a keyed hash (HMAC with a key made at start
and never stored) of user, bcrypt hash and password: the cache never holds a password or anything
a password could be guessed from offline, and a changed hash in the file misses the cache.
The comparison itself is bcrypt's (constant time); the cache is looked up by a digest an attacker
cannot predict, so its timing tells nothing about the password either.

Against a flood of wrong passwords:
- verified passwords and refused ones are cached apart: refusals, however many, never evict a
  user's verified password, so the real scraper keeps its cached answer;
- one bcrypt runs at a time, and at most `MAX_WAITING` requests wait for it: beyond that a request
  is refused at once (`Busy`, answered 503 with Retry-After) instead of queueing for minutes;
- a request whose client has gone is not checked: the connection is looked at again just before
  bcrypt starts;
- bcrypt runs in a daemon thread that nobody waits for, so a stop never waits for a check.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from typing import Awaitable, Callable, Mapping

import bcrypt

from htap_exporter.threads import in_daemon_thread

# bcrypt reads at most 72 bytes of a password: bcrypt 4 silently ignores the rest, bcrypt 5 raises.
# Longer passwords are refused here, whatever the installed version does.
MAX_PASSWORD_BYTES = 72
# Verified passwords remembered per user (a rotation briefly has two in use).
VERIFIED_PER_USER = 4
# Refused credentials remembered (so that a misconfigured scraper does not pay bcrypt per scrape).
REFUSED_CACHE_SIZE = 256
# Requests allowed to wait for the bcrypt thread; more are refused with 503.
MAX_WAITING = 32
RETRY_AFTER_SECONDS = 1


class Busy(Exception):
    """Too many credential checks waiting: the request is refused, not queued."""


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """`Authorization: Basic base64(user:password)` -> (user, password), None when absent or malformed."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def bcrypt_cost(hashed: bytes) -> int:
    """The cost of a `$2?$NN$...` hash (validated by the web config)."""
    return int(hashed.split(b"$")[2])


class BasicAuthVerifier:
    def __init__(self, checkpw: Callable[[bytes, bytes], bool] = bcrypt.checkpw,
                 hashpw: Callable[[bytes, bytes], bytes] = bcrypt.hashpw, max_waiting: int = MAX_WAITING,
                 now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._checkpw = checkpw
        self._hashpw = hashpw
        self._now = now
        self._sleep = sleep
        self._key = secrets.token_bytes(32)
        # user -> digests of the passwords verified for it (newest last); refusals cannot evict them.
        self._verified: dict[str, OrderedDict[bytes, None]] = {}
        self._refused: OrderedDict[bytes, None] = OrderedDict()
        # Decoy hashes by cost, of random passwords thrown away, for unknown users.
        self._decoys: dict[int, bytes] = {}
        # One bcrypt at a time: a burst of wrong passwords must not take every core.
        self._lock = asyncio.Lock()
        self._waiting = 0
        self.max_waiting = max_waiting
        self.checks = 0  # bcrypt runs started (tests and figures)
        self.skipped = 0  # checks not run because the client had gone

    def _cache_key(self, user: str, hashed: bytes, password: str) -> bytes:
        message = b"\0".join((user.encode("utf-8"), hashed, password.encode("utf-8")))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _cached(self, user: str, key: bytes) -> bool | None:
        if key in self._verified.get(user, ()):
            return True
        if key in self._refused:
            return False
        return None

    def _remember(self, user: str, key: bytes, known: bool, matches: bool) -> None:
        if known and matches:
            verified = self._verified.setdefault(user, OrderedDict())
            verified[key] = None
            while len(verified) > VERIFIED_PER_USER:
                verified.popitem(last=False)
            return
        self._refused[key] = None
        while len(self._refused) > REFUSED_CACHE_SIZE:
            self._refused.popitem(last=False)

    def decoy_cost(self, users: Mapping[str, bytes]) -> int:
        """An unknown user is checked against a hash of the highest cost in use, so that it takes
        as long as a wrong password for the slowest real user (no user enumeration by timing)."""
        return max((bcrypt_cost(hashed) for hashed in users.values()), default=10)

    async def verify(self, users: Mapping[str, bytes], user: str, password: str,
                     client_gone: Callable[[], bool] = lambda: False) -> bool:
        """True when `password` is `user`'s. Busy when too many checks wait already; False without
        a check when `client_gone()` says the request's client left while it waited."""
        if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES or "\0" in password:
            return False  # see MAX_PASSWORD_BYTES; bcrypt cannot take a NUL byte either
        known = user in users
        # For an unknown user the key holds the cost instead of a hash: one decoy per cost.
        hashed = users[user] if known else b"decoy-%d" % self.decoy_cost(users)
        key = self._cache_key(user, hashed, password)
        cached = self._cached(user, key)
        if cached is not None:
            return cached
        if self._waiting >= self.max_waiting:
            raise Busy()
        self._waiting += 1
        try:
            await self._lock.acquire()  # a waiter cancelled here (its handler was) leaves the queue
        finally:
            self._waiting -= 1
        try:
            cached = self._cached(user, key)
            if cached is not None:
                self._lock.release()
                return cached
            if client_gone():
                self.skipped += 1
                self._lock.release()
                return False
            self.checks += 1
            encoded = password.encode("utf-8")
            started = self._now()
            if known:
                future = in_daemon_thread(lambda: self._check(encoded, hashed), "bcrypt")
            else:
                cost = self.decoy_cost(users)
                future = in_daemon_thread(lambda: self._decoy_check(encoded, cost), "bcrypt")
        except BaseException:
            self._lock.release()
            raise
        # The lock is held until the thread ends, even if this request is cancelled meanwhile:
        # one bcrypt at a time, whatever happens to the requests.
        future.add_done_callback(lambda _: self._lock.release())
        matches = await asyncio.shield(future) and known  # an unknown user is refused even if the decoy matched
        self._remember(user, key, known, matches)
        if known and not matches:
            # A refusal takes as long as one at the highest cost in use, which an unknown user's decoy
            # costs: whatever the users' costs, no user is told apart by timing. bcrypt doubles its
            # work per cost, so this check's own time says how long the slowest one takes. The wait
            # is outside the lock: it holds no other check back.
            missing = (2 ** (self.decoy_cost(users) - bcrypt_cost(hashed)) - 1) * (self._now() - started)
            if missing > 0:
                await self._sleep(missing)
        return matches

    def _decoy_check(self, password: bytes, cost: int) -> bool:
        decoy = self._decoys.get(cost)
        if decoy is None:
            # Making the decoy is one bcrypt at that cost, as long as the check it stands in for.
            decoy = self._decoys[cost] = self._hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(cost))
            return False
        return self._check(password, decoy)

    def _check(self, password: bytes, hashed: bytes) -> bool:
        try:
            return self._checkpw(password, hashed)
        except ValueError:  # e.g. a password bcrypt refuses
            return False
