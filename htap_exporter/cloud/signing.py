"""Huawei Cloud ``SDK-HMAC-SHA256`` AK/SK request signing, and its verification for the simulator.

Pure functions: no I/O, no clock (the caller passes ``now``), no logging, so a secret can never
reach a log line from here.

Checked against the official signer (``huaweicloudsdkcore`` 3.1.219, ``signer/signer.py``), which
is what the real API gateway accepts; ``tests/cloud/test_signing.py`` compares the two on generated
requests. Where the spec text is silent or differs, we follow the SDK:

* Query pairs are sorted on the *decoded* ``(key, value)`` strings (code-point order) and only then
  percent-encoded. Sorting the encoded text would give another order whenever a kept character
  meets an escaped one: ``.`` sorts before ``/``, but ``.`` sorts after ``%2F``; likewise ``~``
  vs ``é`` (``%C3%A9``). A repeated key is simply more pairs, ordered by value.
* Percent-encoding is ``urllib.parse.quote(s, safe="~")``: UTF-8, only ``A-Za-z0-9-_.~`` kept,
  space is ``%20`` (never ``+``).
* The path is ``unquote``d before it is split, so an escaped slash (``%2F``) inside a segment
  becomes a separator in the canonical URI, and an invalid UTF-8 escape decodes to U+FFFD.
* Header values are trimmed with ``str.strip()`` (any Unicode whitespace, not just space and tab),
  and the trimmed value is also what gets sent.
* For a non-empty body, an ``X-Sdk-Content-Sha256`` header's value (e.g. ``UNSIGNED-PAYLOAD``)
  replaces the body hash; an empty body always hashes as ``e3b0...b855``. The SDK adds
  ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` by itself when ``Content-Type`` is neither JSON nor
  BSON. We never add it (our bodies are JSON and we want them signed) but honour it when given.
* The SDK keeps a ``Host`` or ``X-Sdk-Date`` that the caller already set and uses the endpoint's
  netloc verbatim (a written ``:443`` would stay). Here ``Host`` and the date always come from the
  arguments, and a default port is dropped as the spec says. The SDK fails on an empty path
  (``IndexError``); we sign it as ``/``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()

HEADER_DATE = "X-Sdk-Date"
HEADER_PROJECT_ID = "X-Project-Id"
HEADER_SECURITY_TOKEN = "X-Security-Token"
HEADER_CONTENT_SHA256 = "X-Sdk-Content-Sha256"

_DEFAULT_PORTS = {"https": 443, "http": 80}
# RFC 9110 token: anything else in a name could forge lines of the canonical header block.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^`|~0-9A-Za-z_-]+")
_ACCESS_KEY = re.compile(r"[^\s,=]+")
_AUTHORIZATION = re.compile(
    re.escape(ALGORITHM) + r" Access=([^\s,=]+), SignedHeaders=([^\s,=]+), Signature=([0-9a-f]{64})"
)
_UNENCODABLE = "request or credentials contain text that cannot be encoded as UTF-8"


def _encode(text: str) -> str:
    """Percent-encode everything but the unreserved characters, as the SDK does."""
    if text.isascii() and text.isalnum():  # "limit", "100": nothing to encode (every page asks)
        return text
    return quote(text, safe="~")


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """Return the sorted, percent-encoded query string; send exactly this string on the wire.

    Sorting happens before encoding, on the decoded pairs, because that is what the SDK signs.
    """
    return "&".join(f"{_encode(key)}={_encode(value)}" for key, value in sorted(params))


def canonical_uri(path: str) -> str:
    """Canonical form of a wire (already percent-encoded) path: decoded, re-encoded, ends in ``/``."""
    uri = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def host_header(url_scheme: str, host: str, port: int | None) -> str:
    """``Host`` value as the gateway signs it: no default port, IPv6 literals in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if port is None or _DEFAULT_PORTS.get(url_scheme.lower()) == port:
        return host
    return f"{host}:{port}"


def sdk_date(now: dt.datetime) -> str:
    """``X-Sdk-Date`` value; a naive ``now`` is taken to be UTC already."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime(SDK_DATE_FORMAT)


def payload_hash(body: bytes, content_sha256: str | None = None) -> str:
    """Last canonical line: the body's hex SHA-256, or the declared hash for a non-empty body."""
    if not body:
        return EMPTY_BODY_SHA256
    return content_sha256 if content_sha256 else hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str, path: str, query: str, headers: Iterable[tuple[str, str]], body_hash: str
) -> str:
    """The six-line canonical request.

    ``query`` is the output of :func:`canonical_query`; ``headers`` are the signed headers as
    ``(lower-case name, trimmed value)`` in signing order.
    """
    signed = list(headers)
    block = "".join(f"{name}:{value}\n" for name, value in signed)
    names = ";".join(name for name, _ in signed)
    return "\n".join((method.upper(), canonical_uri(path), query, block, names, body_hash))


def string_to_sign(canonical: str, date: str) -> str:
    """``ALGORITHM``, the ``X-Sdk-Date`` value and the hex SHA-256 of the canonical request."""
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{date}\n{digest}"


def signature(to_sign: str, secret_key: str) -> str:
    """Hex HMAC-SHA256 keyed with the SK itself; this algorithm has no key derivation."""
    return hmac.new(secret_key.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, repr=False)
class SignedRequest:
    """What to send: every header, and the query string to put on the wire verbatim."""

    headers: dict[str, str]
    query: str

    def __repr__(self) -> str:
        # A temporary credential's token is as secret as the SK: keep it out of reprs and logs.
        shown = {
            name: "<redacted>" if name.lower() == HEADER_SECURITY_TOKEN.lower() else value
            for name, value in self.headers.items()
        }
        return f"SignedRequest(headers={shown!r}, query={self.query!r})"


def _trimmed(name: str, value: str) -> str:
    value = value.strip()
    # A line break inside a value would let one header forge another in the canonical block.
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"header {name} has a line break or NUL in its value")
    return value


def sign_request(
    *,
    method: str,
    scheme: str,
    host: str,
    port: int | None,
    path: str,
    params: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    now: dt.datetime,
    project_id: str | None = None,
    security_token: str | None = None,
) -> SignedRequest:
    """Sign one request. ``path`` is the wire path, already percent-encoded, sent unchanged.

    ``Host``, ``X-Sdk-Date`` and ``Authorization`` (and ``X-Project-Id`` / ``X-Security-Token``
    when given) are set here and replace any same-named input header. Raises ``ValueError`` for
    input that cannot be signed; its message never quotes a value.
    """
    if not access_key or not _ACCESS_KEY.fullmatch(access_key):
        raise ValueError("access key is empty or contains whitespace, ',' or '='")
    if not secret_key:
        raise ValueError("secret key is empty")
    ours = {HEADER_DATE: sdk_date(now)}
    if project_id is not None:
        ours[HEADER_PROJECT_ID] = project_id
    if security_token is not None:
        ours[HEADER_SECURITY_TOKEN] = security_token
    ours["Host"] = host_header(scheme, host, port)
    replaced = {name.lower() for name in ours} | {"authorization"}

    sent: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError("a header name is not an RFC 9110 token")
        lower = name.lower()
        if lower in replaced:
            continue
        if lower in seen:
            raise ValueError(f"header {name} is given twice (names are case-insensitive)")
        seen.add(lower)
        sent[name] = _trimmed(name, value)
    sent.update((name, _trimmed(name, value)) for name, value in ours.items())

    # Computed in a helper and re-raised outside the handler: a UnicodeEncodeError quotes the
    # offending string, which may be the SK or the token, and would ride along as __context__.
    try:
        query, authorization = _authorize(method, path, params, sent, body, access_key, secret_key)
    except UnicodeEncodeError:
        pass
    else:
        return SignedRequest(headers={**sent, "Authorization": authorization}, query=query)
    raise ValueError(_UNENCODABLE)


def _authorize(
    method: str,
    path: str,
    params: Iterable[tuple[str, str]],
    sent: Mapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
) -> tuple[str, str]:
    query = canonical_query(params)
    signed = sorted((name.lower(), value) for name, value in sent.items() if "_" not in name)
    body_hash = payload_hash(body, dict(signed).get(HEADER_CONTENT_SHA256.lower()))
    canonical = canonical_request(method, path, query, signed, body_hash)
    sig = signature(string_to_sign(canonical, sent[HEADER_DATE]), secret_key)
    names = ";".join(name for name, _ in signed)
    return query, f"{ALGORITHM} Access={access_key}, SignedHeaders={names}, Signature={sig}"


def verify_authorization(
    *,
    method: str,
    path: str,
    query_pairs: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    secret_for: Callable[[str], str | None],
    now: dt.datetime | None = None,
    max_skew: dt.timedelta = dt.timedelta(minutes=15),
) -> str | None:
    """Check a received request's ``Authorization``; ``None`` if valid, else a short reason.

    Server side, for the API simulator. ``path`` is the raw (still percent-encoded) path, e.g.
    aiohttp's ``request.rel_url.raw_path``; anything from ``?`` on is ignored. ``query_pairs`` are
    the decoded pairs (``request.query.items()``); ``headers`` may be a plain dict or a
    case-insensitive multidict. With ``now`` given, a date further than ``max_skew`` away is
    refused, as the gateway does. Never raises on malformed input.
    """
    received: dict[str, list[str]] = {}
    for name, value in headers.items():
        received.setdefault(name.lower(), []).append(value)
    authorizations = received.get("authorization")
    if not authorizations or not authorizations[0].strip():
        return "missing authorization"
    authorization = authorizations[0].strip()
    if not authorization.startswith(ALGORITHM + " "):
        return "unsupported algorithm"
    match = _AUTHORIZATION.fullmatch(authorization)
    if len(authorizations) > 1 or match is None:
        return "malformed authorization"
    access_key, names_field, claimed = match.groups()
    names = names_field.split(";")
    if any(not n or n != n.lower() or "_" in n for n in names) or len(set(names)) < len(names):
        return "malformed authorization"
    # Without these signed, a captured signature could be replayed later or at another host.
    if "host" not in names or HEADER_DATE.lower() not in names:
        return "host and x-sdk-date must be signed"
    signed = []
    for name in names:
        values = received.get(name)
        if not values:
            return f"missing signed header {name}"
        if len(values) > 1:
            return f"signed header {name} given twice"
        signed.append((name, values[0].strip()))
    date = dict(signed)[HEADER_DATE.lower()]
    try:
        sent_at = dt.datetime.strptime(date, SDK_DATE_FORMAT).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return "malformed x-sdk-date"
    if now is not None:
        now = now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)
        if abs(now - sent_at) > max_skew:
            return "request date out of range"
    secret_key = secret_for(access_key)
    if secret_key is None:
        return "unknown access key"
    try:
        body_hash = payload_hash(body, dict(signed).get(HEADER_CONTENT_SHA256.lower()))
        query = canonical_query(query_pairs)
        canonical = canonical_request(method, path.split("?", 1)[0], query, signed, body_hash)
        expected = signature(string_to_sign(canonical, date), secret_key)
    except UnicodeEncodeError:
        return "request cannot be encoded as UTF-8"
    return None if hmac.compare_digest(expected, claimed) else "signature mismatch"
