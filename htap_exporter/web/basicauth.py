"""HTTP basic auth against the web config's bcrypt hashes, without paying bcrypt on every scrape.

bcrypt is slow on purpose (cost 10 is ~70 ms), and Prometheus sends the same credentials on every
scrape. So each verified outcome is remembered under a keyed hash (HMAC with a key made at start
and never stored) of user, bcrypt hash and password: the cache never holds a password or anything
a password could be guessed from offline, and a changed hash in the file misses the cache.
The comparison itself is bcrypt's (constant time); the cache is looked up by a digest an attacker
cannot predict, so its timing tells nothing about the password either.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Callable, Mapping

import bcrypt

# Verified for unknown users, so that an unknown name costs the same time as a wrong password
# (no user enumeration by timing). The hash, at cost 10, of a random password that was thrown away;
# an unknown user is refused even if the decoy matched.
_DECOY_HASH = b"$2b$10$z9OLl.0Y.ilLzkr.twIpsuMZaOOFPiU.WTzsKJNpyp.fCwfCyyZqW"
CACHE_SIZE = 256


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


class BasicAuthVerifier:
    def __init__(self, checkpw: Callable[[bytes, bytes], bool] = bcrypt.checkpw) -> None:
        self._checkpw = checkpw
        self._key = secrets.token_bytes(32)
        self._cache: dict[bytes, bool] = {}
        # One bcrypt at a time: a burst of wrong passwords must not take every core.
        self._lock = asyncio.Lock()

    def _cache_key(self, user: str, hashed: bytes, password: str) -> bytes:
        message = b"\0".join((user.encode("utf-8"), hashed, password.encode("utf-8")))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    async def verify(self, users: Mapping[str, bytes], user: str, password: str) -> bool:
        known = user in users
        hashed = users[user] if known else _DECOY_HASH
        key = self._cache_key(user, hashed, password)
        cached = self._cache.get(key)
        if cached is None:
            async with self._lock:
                cached = self._cache.get(key)
                if cached is None:
                    # In a thread: the event loop keeps polling and serving meanwhile.
                    matches = await asyncio.to_thread(self._check, password.encode("utf-8"), hashed)
                    cached = known and matches
                    if len(self._cache) >= CACHE_SIZE:
                        self._cache.pop(next(iter(self._cache)))
                    self._cache[key] = cached
        return cached

    def _check(self, password: bytes, hashed: bytes) -> bool:
        try:
            return self._checkpw(password, hashed)
        except ValueError:  # e.g. a password with a NUL byte
            return False
