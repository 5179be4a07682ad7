"""`--web.config.file`: the Prometheus exporter-toolkit web configuration, read, validated and watched.

The file format is the toolkit's (`tls_server_config`, `http_server_config`, `basic_auth_users`,
`rate_limit`), so one file secures this exporter and every official one alike. Where Python's `ssl`
cannot do what a key asks, loading fails with a clear error instead of quietly serving something
weaker.

TLS settings apply to new connections: the server's SSL context delegates every handshake to the
context built from the current file, so a rotated certificate is served without a restart, while
established connections keep the one they negotiated (as the toolkit's `GetConfigForClient` does).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from htap_exporter.config import parse_duration
from htap_exporter.config.reader import ConfigError, Reader, load_yaml
from htap_exporter.config.secrets import MAX_CA_FILE_BYTES, FileReadError, read_small_file
from htap_exporter.threads import in_daemon_thread

log = logging.getLogger("htap_exporter.web")

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's tls.CipherSuites() by their IANA names -> OpenSSL's names. The TLS 1.3 suites map to None:
# Go does not let them be configured either (they are always on), so they are accepted and ignored.
CIPHER_SUITES: dict[str, str | None] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}

CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}

CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert", "RequireClientCert",
                     "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")

# The toolkit lets only these headers be set, some only to fixed values, so that every exporter
# answers alike; an empty value means "not set".
ALLOWED_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

# $2$, $2a$, $2b$, $2x$, $2y$: every variant Go's bcrypt.Cost accepts; 22 salt + 31 hash characters.
BCRYPT_HASH_RE = re.compile(r"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")
# bcrypt's time doubles per cost step: 10 is ~70 ms, 14 ~1 s of a core per uncached login. Above
# 14, one login attempt (anyone can send one) holds the one bcrypt slot for seconds to days (31).
MIN_BCRYPT_COST = 4
MAX_BCRYPT_COST = 14
# The files a web config names, and the web config itself, are read like secret files: regular
# files only, opened without blocking, at most this big (a web config with a thousand users is
# ~100 KiB; a certificate chain a few KiB).
MAX_WEB_CONFIG_BYTES = 1024 * 1024
MAX_CERT_FILE_BYTES = 1024 * 1024
# How often the watcher looks at the files for changes (and never from a request or handshake).
WATCH_INTERVAL = 1.0
TLS13_SUITES = frozenset(name for name, openssl in CIPHER_SUITES.items() if openssl is None)


@dataclass(frozen=True)
class TlsServerConfig:
    cert_file: Path | None
    key_file: Path | None
    cert: str | None = field(default=None, repr=False)
    key: str | None = field(default=None, repr=False)
    client_ca_file: Path | None = None
    client_ca: str | None = field(default=None, repr=False)
    client_auth_type: str = "NoClientCert"
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()
    client_allowed_sans: tuple[str, ...] | None = None

    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p is not None)


@dataclass(frozen=True)
class RateLimit:
    interval: float  # seconds between two requests, on average
    burst: int


@dataclass(frozen=True)
class WebConfig:
    file: str
    tls: TlsServerConfig | None = None
    headers: tuple[tuple[str, str], ...] = ()
    http2: bool = True
    # user -> bcrypt hash; the toolkit treats the hashes as secrets, so they stay out of reprs.
    users: dict[str, bytes] = field(default_factory=dict, repr=False)
    rate_limit: RateLimit | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    def files(self) -> tuple[Path, ...]:
        return self.tls.files() if self.tls is not None else ()

    def summary(self) -> str:
        """One line for `--config.check`; names no hash, key or password."""
        if self.tls is None:
            tls = "TLS off (plain HTTP)"
        else:
            versions = {v: k for k, v in TLS_VERSIONS.items()}
            tls = (f"TLS on ({versions[self.tls.min_version]}-{versions[self.tls.max_version]},"
                   f" client certificates: {self.tls.client_auth_type})")
        users = f"basic auth for {len(self.users)} user(s)" if self.users else "no basic auth"
        limit = (f", rate limit {self.rate_limit.burst} burst / {self.rate_limit.interval:g}s"
                 if self.rate_limit else "")
        return f"web config {self.file}: {tls}, {users}{limit}"


class _Reader(Reader):
    """The web config's values, read as the toolkit reads them (no ${ENV}; an empty string is unset)."""

    # The web config's own wording, unchanged since it was written.
    NOT_A_MAPPING = "must be a mapping"
    KEY_NOT_A_STRING = "keys must be strings, not {key_type}"
    UNKNOWN_KEY = "unknown key (known: {allowed})"

    def string(self, value: Any, path: str) -> str:
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.error(path, "must be a string")
        return str(value)

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(path, "must be true or false")
        return value

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(path, "must be a list of strings")
        return tuple(self.string(item, f"{path}[{index}]") for index, item in enumerate(value))


def parse_web_config(text: str, *, file: str, base_dir: Path) -> WebConfig:
    """YAML text -> WebConfig, without touching the files it names (see `load_web_config`)."""
    r = _Reader(file)
    raw = load_yaml(text, file)
    top = r.mapping(raw, "", {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"})
    http = r.mapping(top.get("http_server_config"), "http_server_config", {"http2", "headers"})
    return WebConfig(
        file=file,
        tls=_read_tls(r, top.get("tls_server_config"), base_dir),
        headers=_read_headers(r, http.get("headers")),
        http2=r.boolean(http.get("http2"), "http_server_config.http2", True),
        users=_read_users(r, top.get("basic_auth_users")),
        rate_limit=_read_rate_limit(r, top.get("rate_limit")),
    )


def _read_tls(r: _Reader, value: Any, base_dir: Path) -> TlsServerConfig | None:
    path = "tls_server_config"
    tls = r.mapping(value, path, {
        "cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
        "client_allowed_sans", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
        "curve_preferences"})

    def file_key(key: str) -> Path | None:
        text = r.string(tls.get(key), f"{path}.{key}")
        # Relative paths are relative to the web config file, as in the toolkit.
        return (base_dir / text) if text else None

    def text_key(key: str) -> str | None:
        return r.string(tls.get(key), f"{path}.{key}") or None

    cert_file, key_file, client_ca_file = file_key("cert_file"), file_key("key_file"), file_key("client_ca_file")
    cert, key, client_ca = text_key("cert"), text_key("key"), text_key("client_ca")
    client_auth_type = r.string(tls.get("client_auth_type"), f"{path}.client_auth_type")
    # The toolkit serves plain HTTP unless one of these is set; min_version alone does not turn TLS on.
    if not any((cert_file, key_file, client_ca_file, cert, key, client_ca, client_auth_type)):
        for key_name in ("min_version", "max_version", "cipher_suites", "curve_preferences", "client_allowed_sans"):
            if tls.get(key_name) is not None:
                raise r.error(f"{path}.{key_name}", "set without a certificate: add cert_file and key_file")
        return None
    if cert_file is None and cert is None:
        raise r.error(f"{path}.cert_file", "missing one of cert or cert_file")
    if key_file is None and key is None:
        raise r.error(f"{path}.key_file", "missing one of key or key_file")
    for file_name, inline in (("cert_file", "cert"), ("key_file", "key"), ("client_ca_file", "client_ca")):
        if tls.get(file_name) and tls.get(inline):
            raise r.error(f"{path}.{inline}", f"give either {inline} or {file_name}, not both")
    client_auth_type = _check_client_auth_type(r, path, client_auth_type or "NoClientCert",
                                               has_client_ca=bool(client_ca_file or client_ca))
    versions = _read_tls_versions(r, tls, path)
    ciphers = _read_cipher_suites(r, tls, path, versions["max_version"])
    curves = _read_curves(r, tls, path)
    sans = tls.get("client_allowed_sans")
    allowed_sans = r.strings(sans, f"{path}.client_allowed_sans") if sans is not None else None
    if allowed_sans is not None and client_auth_type != "RequireAndVerifyClientCert":
        raise r.error(f"{path}.client_allowed_sans", "requires client_auth_type RequireAndVerifyClientCert")
    return TlsServerConfig(
        cert_file=cert_file, key_file=key_file, cert=cert, key=key, client_ca_file=client_ca_file,
        client_ca=client_ca, client_auth_type=client_auth_type, min_version=versions["min_version"],
        max_version=versions["max_version"], cipher_suites=ciphers,
        prefer_server_cipher_suites=r.boolean(tls.get("prefer_server_cipher_suites"),
                                              f"{path}.prefer_server_cipher_suites", True),
        curve_preferences=curves, client_allowed_sans=allowed_sans)


def _check_client_auth_type(r: _Reader, path: str, client_auth_type: str, *, has_client_ca: bool) -> str:
    if client_auth_type not in CLIENT_AUTH_TYPES:
        raise r.error(f"{path}.client_auth_type", f"invalid ClientAuth {client_auth_type!r}"
                      f" (one of {', '.join(CLIENT_AUTH_TYPES)})")
    if client_auth_type in ("RequireAnyClientCert", "RequireClientCert"):
        # Go can demand a certificate and then not verify it; OpenSSL through Python cannot.
        raise r.error(f"{path}.client_auth_type", f"{client_auth_type} is not supported: Python's ssl cannot"
                      " require a client certificate without verifying it; use RequireAndVerifyClientCert"
                      " with client_ca_file (the toolkit calls the other types insecure)")
    if has_client_ca and client_auth_type in ("NoClientCert", "RequestClientCert"):
        raise r.error(f"{path}.client_auth_type", "client CA's have been configured without a Client Auth Policy"
                      " (use RequireAndVerifyClientCert)")
    return client_auth_type


def _read_tls_versions(r: _Reader, tls: dict[str, Any], path: str) -> dict[str, ssl.TLSVersion]:
    versions = {}
    for key_name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        name = r.string(tls.get(key_name), f"{path}.{key_name}") or default
        if name not in TLS_VERSIONS:
            raise r.error(f"{path}.{key_name}", f"unknown TLS version {name!r} (one of {', '.join(TLS_VERSIONS)})")
        versions[key_name] = TLS_VERSIONS[name]
    if versions["min_version"] > versions["max_version"]:
        raise r.error(f"{path}.min_version", "is higher than max_version")
    return versions


def _read_cipher_suites(r: _Reader, tls: dict[str, Any], path: str, max_version: ssl.TLSVersion) -> tuple[str, ...]:
    ciphers = r.strings(tls.get("cipher_suites"), f"{path}.cipher_suites")
    for index, name in enumerate(ciphers):
        if name not in CIPHER_SUITES:
            raise r.error(f"{path}.cipher_suites[{index}]", f"unknown cipher {name!r}")
        if name in TLS13_SUITES and max_version < ssl.TLSVersion.TLSv1_3:
            # Listing only these would leave OpenSSL's TLS 1.2 defaults in force, silently.
            raise r.error(f"{path}.cipher_suites[{index}]", f"{name} is a TLS 1.3 suite, which max_version"
                          " below TLS13 never uses: list TLS 1.2 suites, or raise max_version")
    return ciphers


def _read_curves(r: _Reader, tls: dict[str, Any], path: str) -> tuple[str, ...]:
    curves = r.strings(tls.get("curve_preferences"), f"{path}.curve_preferences")
    for index, name in enumerate(curves):
        if name not in CURVES:
            raise r.error(f"{path}.curve_preferences[{index}]", f"unknown curve {name!r} (one of {', '.join(CURVES)})")
    if len(set(curves)) > 1:
        # Python's ssl sets one ECDH group, not a preference list.
        raise r.error(f"{path}.curve_preferences", "Python's ssl can restrict the key exchange to one curve only,"
                      " not a preference list: list exactly one curve, or none for OpenSSL's defaults")
    return curves


def _read_headers(r: _Reader, value: Any) -> tuple[tuple[str, str], ...]:
    path = "http_server_config.headers"
    headers = r.mapping(value, path, set(ALLOWED_HEADERS))
    result = []
    for name, raw in headers.items():
        text = r.string(raw, f"{path}.{name}")
        allowed = ALLOWED_HEADERS[name]
        if allowed and text and text not in allowed:
            raise r.error(f"{path}.{name}", f"invalid value {text!r} (one of {', '.join(allowed)})")
        if any(c in text for c in "\r\n\0"):
            raise r.error(f"{path}.{name}", "must not contain line breaks")
        if text:
            result.append((name, text))
    return tuple(result)


def _read_users(r: _Reader, value: Any) -> dict[str, bytes]:
    path = "basic_auth_users"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise r.error(path, "must be a mapping of user name to bcrypt hash")
    users: dict[str, bytes] = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or not user:
            raise r.error(path, "user names must be non-empty strings")
        if ":" in user:
            raise r.error(f"{path}.{user}", "a user name cannot contain ':' (basic auth splits on it)")
        if not isinstance(hashed, str):
            raise r.error(f"{path}.{user}", "must be a bcrypt hash (a string such as $2y$10$...)")
        match = BCRYPT_HASH_RE.fullmatch(hashed)
        # Never quote the value: the toolkit treats hashes as secrets.
        if match is None:
            raise r.error(f"{path}.{user}", "not a bcrypt hash (expected $2y$, $2b$ or $2a$, a cost, then 53"
                          " characters; make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')")
        cost = int(match.group(1))
        if not MIN_BCRYPT_COST <= cost <= MAX_BCRYPT_COST:
            raise r.error(f"{path}.{user}", f"bcrypt cost {cost} is not between {MIN_BCRYPT_COST} and"
                          f" {MAX_BCRYPT_COST} (above {MAX_BCRYPT_COST}, one login attempt holds the check for"
                          " seconds or more; make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')")
        users[user] = hashed.encode("ascii")
    return users


def _read_rate_limit(r: _Reader, value: Any) -> RateLimit | None:
    path = "rate_limit"
    limit = r.mapping(value, path, {"interval", "burst"})
    raw_interval = limit.get("interval")
    if raw_interval in (None, 0, "0", "0s"):
        return None  # 0 disables the limiter, as in the toolkit
    try:
        interval = parse_duration(raw_interval)
    except ValueError as problem:
        raise r.error(f"{path}.interval", str(problem)) from None
    burst = limit.get("burst")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise r.error(f"{path}.burst", "must be a whole number of at least 1 when interval is set")
    return RateLimit(interval=interval, burst=burst)


def _refuse_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's passphrase.
    raise ValueError("encrypted")


def build_ssl_context(tls: TlsServerConfig, file: str) -> ssl.SSLContext:
    """Read the certificate, key and CA files and build the server context; errors name the key."""
    path = "tls_server_config"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.minimum_version = tls.min_version
        context.maximum_version = tls.max_version
    except (ValueError, ssl.SSLError) as problem:
        raise ConfigError(file, f"{path}.min_version", f"not supported by this OpenSSL: {problem}") from None
    _load_certificate(context, tls, file)

    if tls.client_auth_type in ("NoClientCert", "RequestClientCert"):
        # Go's RequestClientCert asks for a certificate it never verifies; nothing here would use an
        # unverified certificate, so not asking is the same protection.
        context.verify_mode = ssl.CERT_NONE
    else:
        context.verify_mode = (ssl.CERT_REQUIRED if tls.client_auth_type == "RequireAndVerifyClientCert"
                               else ssl.CERT_OPTIONAL)
        where = f"{path}.client_ca_file" if tls.client_ca_file else f"{path}.client_ca"
        try:
            if tls.client_ca_file is not None:
                cadata = _read_tls_file(tls.client_ca_file, MAX_CA_FILE_BYTES, file, where).decode("ascii")
                context.load_verify_locations(cadata=cadata)
            elif tls.client_ca is not None:
                context.load_verify_locations(cadata=tls.client_ca)
            else:
                context.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Go verifies against the system roots
        except OSError as problem:
            raise ConfigError(file, where, f"cannot read: {problem.strerror or problem}") from None
        except (ssl.SSLError, ValueError) as problem:
            raise ConfigError(file, where, f"not a PEM CA certificate: {_ssl_reason(problem)}") from None
        if (tls.client_ca_file or tls.client_ca) and not context.get_ca_certs():
            raise ConfigError(file, where, "holds no CA certificate")

    suites = [CIPHER_SUITES[name] for name in tls.cipher_suites]
    openssl_names = [name for name in suites if name is not None]
    for index, (name, openssl_name) in enumerate(zip(tls.cipher_suites, suites, strict=True)):
        if openssl_name is None:
            continue
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(openssl_name)
        except ssl.SSLError:
            raise ConfigError(file, f"{path}.cipher_suites[{index}]",
                              f"{name} is not available in this Python's OpenSSL ({ssl.OPENSSL_VERSION})") from None
    if openssl_names:
        context.set_ciphers(":".join(openssl_names))
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curve_preferences:
        try:
            context.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
        except (ValueError, ssl.SSLError):
            raise ConfigError(file, f"{path}.curve_preferences[0]",
                              f"{tls.curve_preferences[0]} is not available in this Python's OpenSSL") from None
    return context


def _read_tls_file(file_path: Path, cap: int, file: str, where: str) -> bytes:
    """A certificate, key or CA file, read under the secret files' rules (see exporter.secrets)."""
    try:
        return read_small_file(file_path, cap)
    except FileReadError as problem:
        if not os.path.lexists(file_path):
            raise ConfigError(file, where, f"file not found: {file_path}") from None
        raise ConfigError(file, where, f"{file_path} {problem.reason}") from None


def _load_certificate(context: ssl.SSLContext, tls: TlsServerConfig, file: str) -> None:
    path = "tls_server_config"
    if tls.cert_file is not None:
        cert = _read_tls_file(tls.cert_file, MAX_CERT_FILE_BYTES, file, f"{path}.cert_file")
    else:
        cert = (tls.cert or "").encode("utf-8")
    if tls.key_file is not None:
        key = _read_tls_file(tls.key_file, MAX_CERT_FILE_BYTES, file, f"{path}.key_file")
    else:
        key = (tls.key or "").encode("utf-8")
    try:
        # OpenSSL loads a certificate chain only from a path: the bytes just read and checked are
        # handed over in memory (no temporary directory: the root may be read-only, /tmp absent).
        with _pem_path(cert) as cert_path, _pem_path(key) as key_path:
            context.load_cert_chain(cert_path, key_path, password=_refuse_passphrase)
    except ValueError:
        raise ConfigError(file, f"{path}.key_file", "the key is encrypted; give an unencrypted key") from None
    except ssl.SSLError as problem:
        raise ConfigError(file, f"{path}.cert_file", "cannot load the certificate and key"
                          f" ({_ssl_reason(problem)}); check that they are PEM and belong together") from None
    except OSError as problem:
        raise ConfigError(file, f"{path}.cert_file", f"cannot load: {problem.strerror or problem}") from None


class _pem_path:
    """A path OpenSSL can open that holds `data`: an anonymous in-memory file (Linux memfd, seen
    through /proc/self/fd), else a private temporary directory (mode 0700) removed right after."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._fd: int | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> str:
        memfd_create = getattr(os, "memfd_create", None)
        if memfd_create is not None and os.path.isdir("/proc/self/fd"):
            try:
                self._fd = memfd_create("htap-exporter-tls", getattr(os, "MFD_CLOEXEC", 0))
                view = memoryview(self._data)
                while view:
                    view = view[os.write(self._fd, view):]
                return f"/proc/self/fd/{self._fd}"
            except OSError:  # memfd refused (a seccomp profile?): the temporary directory then
                self.__exit__()
                self._fd = None
        self._directory = tempfile.TemporaryDirectory(prefix="htap-exporter-tls-")
        return str(_write_private(Path(self._directory.name) / "file.pem", self._data))

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
        if self._directory is not None:
            self._directory.cleanup()


def _write_private(target: Path, data: bytes) -> Path:
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    return target


def _ssl_reason(problem: Exception) -> str:
    reason = getattr(problem, "reason", None)
    return str(reason) if reason else type(problem).__name__


def load_web_config(path: str | Path) -> WebConfig:
    file = str(path)
    try:
        text = read_small_file(Path(path), MAX_WEB_CONFIG_BYTES).decode("utf-8")
    except FileReadError as problem:
        if not os.path.lexists(path):
            raise ConfigError(file, "", "file not found") from None
        raise ConfigError(file, "", problem.reason) from None
    except UnicodeDecodeError:
        raise ConfigError(file, "", "not UTF-8 text") from None
    config = parse_web_config(text, file=file, base_dir=Path(path).resolve().parent)
    if config.tls is None:
        return config
    return WebConfig(file=config.file, tls=config.tls, headers=config.headers, http2=config.http2,
                     users=config.users, rate_limit=config.rate_limit,
                     ssl_context=build_ssl_context(config.tls, file))


_Signature = tuple[tuple[int, int, int, int] | None, ...]


def _signature(paths: tuple[Path, ...]) -> _Signature:
    result: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            result.append(None)
        else:
            result.append((st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino))
    return tuple(result)


class WebConfigWatcher:
    """The current web config; re-read when the file or a file it names changes, or on demand.

    Requests and TLS handshakes only read `current`. The files are looked at by `watch()`, a task
    that checks them at most once a second, and every read and parse runs in a worker thread, so
    a hostile file (a FIFO, /dev/zero, a huge file) can neither block the event loop nor the stop.
    A file that turns invalid is logged once per change and the previous config stays in force.
    """

    def __init__(self, path: str | Path, loader: Callable[[str | Path], WebConfig] = load_web_config) -> None:
        self.path = Path(path)
        self._loader = loader
        self.current = loader(self.path)  # ConfigError at start: the CLI exits 1 with it
        self._signature = self._stat(self.current)
        self.listeners: list[Callable[[WebConfig], None]] = []
        self._lock = threading.Lock()  # one load at a time (the watch task and a reload)

    def _stat(self, config: WebConfig) -> _Signature:
        return _signature((self.path, *config.files()))

    def check(self) -> None:
        """Re-read if a file changed (blocking: call it from a thread, as `watch` does)."""
        if self._stat(self.current) != self._signature:
            self.reload()

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Check the files every `interval` seconds, off the event loop, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.shield(in_daemon_thread(self.check, "web-config"))

    async def reload_async(self) -> str | None:
        return await asyncio.shield(in_daemon_thread(self.reload, "web-config"))

    def reload(self) -> str | None:
        """Re-read now; returns None on success, else the problem (the previous config stays)."""
        with self._lock:
            return self._reload()

    def _reload(self) -> str | None:
        signature = self._stat(self.current)
        try:
            config = self._loader(self.path)
            if (config.tls is None) != (self.current.tls is None):
                raise ConfigError(str(self.path), "tls_server_config",
                                  "turning TLS on or off needs a restart (the listeners' scheme is fixed at start)")
        except ConfigError as problem:
            self._signature = signature  # log once per change, not on every check
            log.error("web config reload failed, keeping the previous one",
                      extra={"file": str(self.path), "error": str(problem)})
            return str(problem)
        except Exception:  # a bug of ours must not take the running web config down
            self._signature = signature
            log.exception("web config reload failed, keeping the previous one", extra={"file": str(self.path)})
            return "internal error while loading the web config (see the log)"
        self.current = config
        self._signature = self._stat(config)
        for listener in self.listeners:
            listener(config)
        log.info("web config loaded", extra={"file": str(self.path), "tls": config.tls is not None,
                                             "basic_auth_users": len(config.users)})
        return None


class RotatingSSLContext(ssl.SSLContext):
    """The context the listeners hold: each new connection gets the current file's context.

    asyncio wraps every accepted connection with `wrap_bio`; handing that call to the latest
    context is what lets a rotated certificate reach new connections without a restart.
    """

    def __new__(cls, watcher: WebConfigWatcher) -> "RotatingSSLContext":
        return super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)

    def __init__(self, watcher: WebConfigWatcher) -> None:
        self.watcher = watcher

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        context = self.watcher.current.ssl_context
        assert context is not None  # a reload never turns TLS off (see WebConfigWatcher.reload)
        return context.wrap_bio(*args, **kwargs)
