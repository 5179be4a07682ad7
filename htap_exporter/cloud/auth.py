"""Authentication to the cloud API: static token, IAM password token, AK/SK signing.

Each authenticator turns an OutgoingRequest into the URL and headers to send. All three share an
AuthGate: Huawei locks an access key for 5 minutes after more than 5 consecutive bad signatures
(and IAM locks users after bad passwords), so rejected credentials are retried only after a
growing pause, and never by many requests at once.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import Callable

from yarl import URL

from htap_exporter.clock import Clock
from htap_exporter.config import AkSkAuth, AuthConfig, PasswordAuth, SecretError, SecretSource, TokenAuth
from htap_exporter.redact import Redactor
from htap_exporter.cloud.signing import canonical_query, sign_request
from htap_exporter.cloud.errors import ApiError
from htap_exporter.cloud.transport import Transport

# Pause after the n-th consecutive rejection: 15 s, 30 s, 60 s, 120 s, 240 s, then 5 minutes
# (Huawei's lock time). A wrong key thus costs 3 attempts in the first minute, not one per poll.
AUTH_PAUSE_FIRST = 15.0
AUTH_PAUSE_MAX = 300.0
# Refresh an IAM token at 80 % of its life or 1 h before it expires, whichever comes first.
TOKEN_REFRESH_FRACTION = 0.8
TOKEN_REFRESH_MARGIN = 3600.0
DEFAULT_TOKEN_LIFE = 24 * 3600.0


@dataclass
class OutgoingRequest:
    method: str
    endpoint: URL  # scheme://host[:port][/prefix]
    path: str  # path below the endpoint, e.g. /v3/{project_id}/instances/...
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def full_path(self) -> str:
        return self.endpoint.path.rstrip("/") + self.path

    def url(self, query: str) -> URL:
        return URL.build(scheme=self.endpoint.scheme, authority=self.endpoint.raw_authority,
                         path=self.full_path, query_string=query, encoded=True)


def token_refresh_delay(life: float) -> float:
    """Seconds until a token with `life` seconds left should be replaced."""
    if life <= TOKEN_REFRESH_MARGIN:
        return TOKEN_REFRESH_FRACTION * life
    return min(TOKEN_REFRESH_FRACTION * life, life - TOKEN_REFRESH_MARGIN)


def auth_pause(failures: int) -> float:
    doubling: int = 2 ** max(0, failures - 1)
    return min(AUTH_PAUSE_MAX, AUTH_PAUSE_FIRST * doubling)


class AuthGate:
    """Lets requests through freely while the credentials are known good; after a rejection (or
    before the first success) one request at a time, and none during the pause."""

    def __init__(self, clock: Clock, credentials_changed: Callable[[], bool] = lambda: False) -> None:
        self._clock = clock
        # New credentials (a secret file rewritten) deserve a try at once: the pause protects
        # against repeating the same rejected ones.
        self._credentials_changed = credentials_changed
        self._lock = asyncio.Lock()
        self.failures = 0
        self.blocked_until = 0.0
        self.verified = False
        self._epoch = 0

    def _check(self) -> None:
        wait = self.blocked_until - self._clock.monotonic()
        if wait > 0 and not self._credentials_changed():
            raise ApiError("auth", f"credentials were rejected {self.failures} time(s) in a row;"
                                   f" not retried for another {wait:.0f}s")

    def attempt(self) -> _Attempt:
        """`async with gate.attempt():` around one request (a class, not a generator: it runs for
        every request of every poll)."""
        return _Attempt(self)

    def _outcome(self, epoch: int, problem: BaseException | None) -> None:
        # Outcomes of requests that started before the last change of verdict are stale: eight
        # concurrent 401s are one rejection, and a success racing a rejection must not unblock it.
        if epoch != self._epoch:
            return
        if problem is None:
            self.failures = 0
            self.verified = True
            self.blocked_until = 0.0
        # Only 401 says the credentials are wrong; a 403 (no permission on one instance) must not
        # pause the project's other instances.
        elif isinstance(problem, ApiError) and problem.status == 401:
            self._epoch += 1
            self.failures += 1
            self.verified = False
            self.blocked_until = self._clock.monotonic() + auth_pause(self.failures)


class _Attempt:
    """One request through an AuthGate: free while the credentials are known good, else one at a
    time under the gate's lock."""

    __slots__ = ("_gate", "_epoch", "_locked")

    def __init__(self, gate: AuthGate) -> None:
        self._gate = gate
        self._epoch = 0
        self._locked = False

    async def __aenter__(self) -> None:
        gate = self._gate
        if not gate.verified:
            await gate._lock.acquire()
            self._locked = True
        try:
            gate._check()
        except BaseException:
            self._release()
            raise
        self._epoch = gate._epoch

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        try:
            if exc_type is None or isinstance(exc, ApiError):
                self._gate._outcome(self._epoch, exc)
        finally:
            self._release()

    def _release(self) -> None:
        if self._locked:
            self._locked = False
            self._gate._lock.release()


class FileBackedSecret:
    """A SecretSource that re-reads its file only when the file changes (rotated secrets)."""

    def __init__(self, source: SecretSource, redactor: Redactor) -> None:
        self._source = source
        self._redactor = redactor
        self._stamp: tuple[int, int, int] | None = None
        self._value = ""

    def _file_stamp(self) -> tuple[int, int, int]:
        assert self._source.file is not None
        stat = self._source.file.stat()
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def changed(self) -> bool:
        """True if the file differs from what was last read (False for inline secrets)."""
        if self._source.file is None or self._stamp is None:
            return False
        try:
            return self._file_stamp() != self._stamp
        except OSError:
            return False

    def get(self) -> str:
        if self._source.file is None:
            if not self._value:
                self._value = self._read()
            return self._value
        try:
            stamp = self._file_stamp()
        except OSError as problem:
            raise ApiError("auth", f"{self._source.kind}: cannot read {self._source.file}:"
                                   f" {problem.strerror}") from None
        if stamp != self._stamp:
            self._value = self._read()
            self._stamp = stamp
        return self._value

    def _read(self) -> str:
        try:
            value = self._source.read()
        except SecretError as problem:
            raise ApiError("auth", f"{self._source.kind}: {problem}") from None
        # One slot per source: a rotated file's older values are forgotten, not accumulated.
        self._redactor.remember(("secret", self._source), value)
        return value


class Authenticator:
    """Base: the gate, and the hook called on a 401 (True: retrying with fresh credentials may help)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.secrets: list[FileBackedSecret] = []
        self.gate = AuthGate(clock, lambda: any(secret.changed() for secret in self.secrets))

    async def prepare(self, request: OutgoingRequest) -> tuple[URL, dict[str, str]]:
        raise NotImplementedError

    async def unauthorized(self, sent_headers: dict[str, str]) -> bool:
        return False


class StaticTokenAuthenticator(Authenticator):
    def __init__(self, config: TokenAuth, clock: Clock, redactor: Redactor) -> None:
        super().__init__(clock)
        self._token = FileBackedSecret(config.token, redactor)
        self.secrets = [self._token]

    async def prepare(self, request: OutgoingRequest) -> tuple[URL, dict[str, str]]:
        headers = dict(request.headers)
        headers["X-Auth-Token"] = self._token.get()
        return request.url(canonical_query(request.params)), headers


class AkSkAuthenticator(Authenticator):
    def __init__(self, config: AkSkAuth, project_id: str, clock: Clock, redactor: Redactor) -> None:
        super().__init__(clock)
        self._project_id = project_id
        self._access_key = FileBackedSecret(config.access_key, redactor)
        self._secret_key = FileBackedSecret(config.secret_key, redactor)
        self._security_token = (FileBackedSecret(config.security_token, redactor)
                                if config.security_token is not None else None)
        self.secrets = [s for s in (self._access_key, self._secret_key, self._security_token) if s is not None]

    async def prepare(self, request: OutgoingRequest) -> tuple[URL, dict[str, str]]:
        endpoint = request.endpoint
        signed = sign_request(
            method=request.method, scheme=endpoint.scheme, host=endpoint.host or "",
            port=endpoint.explicit_port, path=request.full_path, params=request.params,
            headers=request.headers, body=request.body,
            access_key=self._access_key.get(), secret_key=self._secret_key.get(),
            now=datetime.datetime.fromtimestamp(self.clock.time(), tz=datetime.timezone.utc),
            project_id=self._project_id,
            security_token=self._security_token.get() if self._security_token else None,
        )
        return request.url(signed.query), dict(signed.headers)


class PasswordAuthenticator(Authenticator):
    """IAM user password -> project-scoped token, cached and shared by every poll of the project."""

    def __init__(self, config: PasswordAuth, project_id: str, iam_endpoint: str, transport: Transport,
                 clock: Clock, redactor: Redactor) -> None:
        super().__init__(clock)
        self._config = config
        self._project_id = project_id
        self._iam_url = URL(iam_endpoint.rstrip("/") + "/v3/auth/tokens").with_query(nocatalog="true")
        self._transport = transport
        self._redactor = redactor
        self._password = FileBackedSecret(config.password, redactor)
        self.secrets = [self._password]
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.token_requests = 0

    async def prepare(self, request: OutgoingRequest) -> tuple[URL, dict[str, str]]:
        headers = dict(request.headers)
        headers["X-Auth-Token"] = await self._current_token()
        return request.url(canonical_query(request.params)), headers

    async def unauthorized(self, sent_headers: dict[str, str]) -> bool:
        async with self._lock:
            # Only the first of several concurrent 401s for the same token invalidates it.
            if self._token is not None and sent_headers.get("X-Auth-Token") == self._token:
                self._token = None
        return True

    async def _current_token(self) -> str:
        token = self._token
        if token is not None and self.clock.monotonic() < self._refresh_at:
            return token
        async with self._lock:
            if self._token is None or self.clock.monotonic() >= self._refresh_at:
                await self._fetch_token()
            assert self._token is not None
            return self._token

    async def _fetch_token(self) -> None:
        body = json.dumps({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self._config.username, "password": self._password.get(),
                "domain": {"name": self._config.domain}}}},
            "scope": {"project": {"id": self._project_id}},
        }}).encode()
        self.token_requests += 1
        response = await self._transport.send(
            "iam_token", "POST", self._iam_url,
            {"Content-Type": "application/json;charset=utf8"}, body, capped=False)
        token = next((v for k, v in response.headers.items() if k.lower() == "x-subject-token"), "")
        if not token:
            raise ApiError("bad_response", "IAM answered without an X-Subject-Token header",
                           status=response.status)
        # One slot per project and user: each renewal replaces the token before last.
        self._redactor.remember(("iam_token", self._project_id, str(self._iam_url), self._config.domain,
                                 self._config.username), token)
        life = DEFAULT_TOKEN_LIFE
        try:
            document = response.json()
            expires_at = document["token"]["expires_at"]
            expires = datetime.datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=datetime.timezone.utc)
            life = expires.timestamp() - self.clock.time()
        except (ApiError, KeyError, TypeError, ValueError, AttributeError):
            pass  # a token without a readable expiry is used for the default life (24 h)
        if life <= 0:
            raise ApiError("auth", "IAM issued a token that has already expired (check the clock)")
        self._token = token
        self._refresh_at = self.clock.monotonic() + token_refresh_delay(life)


def make_authenticator(config: AuthConfig, *, project_id: str, iam_endpoint: str, transport: Transport,
                       clock: Clock, redactor: Redactor) -> Authenticator:
    if isinstance(config, TokenAuth):
        return StaticTokenAuthenticator(config, clock, redactor)
    if isinstance(config, PasswordAuth):
        return PasswordAuthenticator(config, project_id, iam_endpoint, transport, clock, redactor)
    return AkSkAuthenticator(config, project_id, clock, redactor)
