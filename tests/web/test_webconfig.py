"""The web config file: the toolkit's format, its validation, TLS contexts and reloading."""

from __future__ import annotations

import logging
import ssl
import tempfile
from pathlib import Path

import pytest

from htap_exporter.config import ConfigError
from htap_exporter.web.webconfig import CIPHER_SUITES, RotatingSSLContext, WebConfigWatcher, load_web_config
from tests.fakes import make_hostile_file
from tests.webtls import Pki, bcrypt_hash


def write(directory: Path, text: str, name: str = "web.yml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    return str(caught.value)


def test_the_toolkit_sample_file_loads_unchanged(pki: Pki) -> None:
    # docs/web-config.yml of the exporter-toolkit, with its certificate names: relative to the file.
    text = """# TLS and basic authentication configuration example.
tls_server_config:
  cert_file: server.crt
  key_file: server.key

basic_auth_users:
  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze
  bob: $2y$10$hLqFl9jSjoAAy95Z/zw8Ye8wkdMBM8c5Bn1ptYqP/AXyV0.oy0S8m
"""
    config = load_web_config(write(pki.directory, text))
    assert config.tls is not None and config.tls.cert_file == pki.directory / "server.crt"
    assert set(config.users) == {"alice", "bob"}
    assert isinstance(config.ssl_context, ssl.SSLContext)
    assert config.ssl_context.verify_mode == ssl.CERT_NONE
    assert config.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2  # the toolkit's default
    assert "$2y$" not in repr(config)  # hashes are secrets in the toolkit


def test_every_documented_key(pki: Pki) -> None:
    text = f"""
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
  client_allowed_sans: [alice@example.com]
  min_version: TLS13
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  prefer_server_cipher_suites: false
  curve_preferences: [X25519]
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Content-Security-Policy: "default-src 'self'"
    Strict-Transport-Security: max-age=31536000
    X-XSS-Protection: ""
basic_auth_users:
  prometheus: {bcrypt_hash("secret")}
rate_limit:
  interval: 100ms
  burst: 20
"""
    config = load_web_config(write(pki.directory, text))
    context = config.ssl_context
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"] == ["ECDHE-ECDSA-AES128-GCM-SHA256"]
    assert len(context.get_ca_certs()) == 1
    assert dict(config.headers) == {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff",
                                    "Content-Security-Policy": "default-src 'self'",
                                    "Strict-Transport-Security": "max-age=31536000"}
    assert config.rate_limit is not None and config.rate_limit.interval == 0.1 and config.rate_limit.burst == 20
    assert config.http2 is False


def test_an_empty_file_means_plain_http_and_no_auth(tmp_path: Path) -> None:
    config = load_web_config(write(tmp_path, ""))
    assert config.tls is None and config.users == {} and config.ssl_context is None


@pytest.mark.parametrize("text, where, problem", [
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  colour: blue\n",
     "tls_server_config.colour", "unknown key"),
    ("basic_auth_user:\n  a: b\n", "basic_auth_user", "unknown key"),
    ("http_server_config:\n  headers:\n    Server: nginx\n", "http_server_config.headers.Server", "unknown key"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "http_server_config.headers.X-Frame-Options",
     "invalid value"),
    ("basic_auth_users:\n  alice: hunter2-plain-text\n", "basic_auth_users.alice", "not a bcrypt hash"),
    ("tls_server_config:\n  cert_file: server.crt\n", "tls_server_config.key_file", "missing one of key or key_file"),
    ("tls_server_config:\n  key_file: server.key\n", "tls_server_config.cert_file", "missing one of cert or cert_file"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS14\n",
     "tls_server_config.min_version", "unknown TLS version"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n  max_version: TLS12\n",
     "tls_server_config.min_version", "higher than max_version"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
     "tls_server_config.cipher_suites[0]", "unknown cipher"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  curve_preferences: [CurveP999]\n",
     "tls_server_config.curve_preferences[0]", "unknown curve"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  curve_preferences: [X25519, CurveP256]\n",
     "tls_server_config.curve_preferences", "one curve only"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n",
     "tls_server_config.client_auth_type", "not supported"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Sometimes\n",
     "tls_server_config.client_auth_type", "invalid ClientAuth"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.pem\n",
     "tls_server_config.client_auth_type", "without a Client Auth Policy"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_allowed_sans: [a]\n",
     "tls_server_config.client_allowed_sans", "requires client_auth_type"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n", "tls_server_config.cert_file",
     "file not found"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n", "tls_server_config.cert_file",
     "cannot load the certificate and key"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n"
     "  client_ca_file: server.key\n", "tls_server_config.client_ca_file", ""),
    ("rate_limit:\n  interval: 1s\n  burst: 0\n", "rate_limit.burst", "at least 1"),
    ("basic_auth_users: [alice]\n", "basic_auth_users", "must be a mapping"),
    ("tls_server_config:\n  cert_file: a\n  cert_file: b\n", "", "duplicate key"),
    # A cost-31 hash would hold the one bcrypt slot for days per login attempt.
    (f"basic_auth_users:\n  alice: {'$2b$15$' + 'a' * 53}\n", "basic_auth_users.alice",
     "bcrypt cost 15 is not between 4 and 14"),
    (f"basic_auth_users:\n  alice: {'$2y$31$' + 'a' * 53}\n", "basic_auth_users.alice",
     "bcrypt cost 31 is not between 4 and 14"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  max_version: TLS12\n"
     "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n",
     "tls_server_config.cipher_suites[1]", "TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite, which max_version below TLS13"),
])
def test_problems_name_the_file_and_key(pki: Pki, text: str, where: str, problem: str) -> None:
    pki.issue_server("other")  # a key that does not belong to server.crt
    path = write(pki.directory, text)
    message = error_of(path)
    assert message.startswith(f"{path}: {where}: " if where else f"{path}: "), message
    assert problem in message
    assert "hunter2" not in message


def test_tls13_suites_with_tls13_allowed_are_accepted_and_ignored_as_in_go(pki: Pki) -> None:
    config = load_web_config(write(pki.directory, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                                                  "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"))
    assert config.tls is not None and config.tls.cipher_suites == ("TLS_AES_128_GCM_SHA256",)


@pytest.mark.parametrize("kind, problem", [("fifo", "is not a regular file (a FIFO)"),
                                           ("dev_zero", "is not a regular file (a device)"),
                                           ("huge", "is larger than 1 MiB")])
@pytest.mark.parametrize("target", ["web.yml", "server.crt", "server.key", "ca.pem"])
def test_hostile_files_fail_at_once_in_one_line(pki: Pki, target: str, kind: str, problem: str) -> None:
    path = write(pki.directory, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n")
    make_hostile_file(pki.directory / target, kind)
    if target == "ca.pem" and kind == "huge":
        problem = "is larger than 4 MiB"
    message = error_of(path)  # would hang on the FIFO, or read /dev/zero until memory ran out
    where = {"web.yml": "", "server.crt": "tls_server_config.cert_file: ",
             "server.key": "tls_server_config.key_file: ", "ca.pem": "tls_server_config.client_ca_file: "}[target]
    assert "\n" not in message
    if target == "web.yml":
        assert message == f"{path}: {problem}"
    else:
        assert message == f"{path}: {where}{pki.directory / target} {problem}"


def test_certificate_files_load_without_a_temporary_directory(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_temporary_directory(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("No usable temporary directory found")

    monkeypatch.setattr(tempfile, "TemporaryDirectory", no_temporary_directory)
    monkeypatch.setattr(tempfile, "mkdtemp", no_temporary_directory)
    cert = (pki.directory / "server.crt").read_text()
    key = (pki.directory / "server.key").read_text()
    indent = lambda pem: "\n".join("    " + line for line in pem.splitlines())  # noqa: E731
    for text in ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
                 f"tls_server_config:\n  cert: |\n{indent(cert)}\n  key: |\n{indent(key)}\n"):
        assert load_web_config(write(pki.directory, text)).ssl_context is not None


def test_an_encrypted_key_is_refused_without_prompting(pki: Pki) -> None:
    from cryptography.hazmat.primitives import serialization  # comes with trustme

    key = serialization.load_pem_private_key((pki.directory / "server.key").read_bytes(), password=None)
    (pki.directory / "encrypted.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"x")))
    message = error_of(write(pki.directory, "tls_server_config:\n  cert_file: server.crt\n  key_file: encrypted.key\n"))
    assert "tls_server_config.key_file: the key is encrypted" in message


def test_inline_certificate_key_and_client_ca(pki: Pki) -> None:
    cert = (pki.directory / "server.crt").read_text()
    key = (pki.directory / "server.key").read_text()
    ca = pki.ca_file.read_text()
    indent = lambda pem: "\n".join("    " + line for line in pem.splitlines())  # noqa: E731
    text = (f"tls_server_config:\n  cert: |\n{indent(cert)}\n  key: |\n{indent(key)}\n"
            f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca: |\n{indent(ca)}\n")
    config = load_web_config(write(pki.directory, text))
    assert config.ssl_context is not None and len(config.ssl_context.get_ca_certs()) == 1
    assert "PRIVATE KEY" not in repr(config)


def test_every_cipher_name_maps_to_one_openssl_accepts() -> None:
    for name, openssl_name in CIPHER_SUITES.items():
        if openssl_name is not None:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(openssl_name)


def test_watcher_reloads_on_change_and_keeps_the_old_config_when_broken(
        pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    path = write(pki.directory, f"basic_auth_users:\n  alice: {bcrypt_hash('one')}\n")
    watcher = WebConfigWatcher(path)
    first = watcher.current
    watcher.check()
    assert watcher.current is first  # nothing changed: nothing re-read

    write(pki.directory, f"basic_auth_users:\n  bob: {bcrypt_hash('two')}\n")
    watcher.check()
    assert set(watcher.current.users) == {"bob"}

    caplog.set_level(logging.ERROR)
    write(pki.directory, "basic_auth_users:\n  carol: plain-text-password\n")
    watcher.check()
    watcher.check()
    assert set(watcher.current.users) == {"bob"}
    failures = [r for r in caplog.records if r.getMessage().startswith("web config reload failed")]
    assert len(failures) == 1  # once per change, not once per request
    assert "basic_auth_users.carol" in failures[0].error  # type: ignore[attr-defined]
    assert "plain-text-password" not in caplog.text


def test_turning_tls_off_needs_a_restart(pki: Pki) -> None:
    path = write(pki.directory, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    watcher = WebConfigWatcher(path)
    write(pki.directory, "")
    assert "needs a restart" in (watcher.reload() or "")
    assert watcher.current.tls is not None


def test_a_rotated_certificate_reaches_new_connections(pki: Pki) -> None:
    path = write(pki.directory, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    watcher = WebConfigWatcher(path)
    rotating = RotatingSSLContext(watcher)

    def served_cn() -> str:
        client = pki.client_context()
        server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
        server = rotating.wrap_bio(server_in, server_out, server_side=True)
        peer = client.wrap_bio(client_in, client_out, server_hostname="localhost")
        for _ in range(10):
            for side, outgoing, incoming in ((peer, client_out, server_in), (server, server_out, client_in)):
                try:
                    side.do_handshake()
                except ssl.SSLWantReadError:
                    pass
                incoming.write(outgoing.read())
        from tests.webtls import certificate_cn
        return certificate_cn(peer.getpeercert(binary_form=True))

    assert served_cn() == "htap-exporter server"
    new_ca_leaf = pki.ca.issue_cert("localhost", common_name="htap-exporter renewed")
    (pki.directory / "server.crt").write_bytes(b"".join(b.bytes() for b in new_ca_leaf.cert_chain_pems))
    (pki.directory / "server.key").write_bytes(new_ca_leaf.private_key_pem.bytes())
    assert served_cn() == "htap-exporter server"  # a handshake never looks at the files ...
    watcher.check()  # ... the watcher's task does, once a second
    assert served_cn() == "htap-exporter renewed"


def test_summary_for_config_check(pki: Pki) -> None:
    path = write(pki.directory, f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                                f"basic_auth_users:\n  alice: {bcrypt_hash('pw')}\n")
    summary = load_web_config(path).summary()
    assert summary == (f"web config {path}: TLS on (TLS12-TLS13, client certificates: NoClientCert),"
                       " basic auth for 1 user(s)")
    assert load_web_config(write(pki.directory, "")).summary().endswith("TLS off (plain HTTP), no basic auth")
