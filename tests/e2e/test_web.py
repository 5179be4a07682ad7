"""The HTTP face through the real CLI: the toolkit web config (TLS, client certificates, basic auth,
headers), reloading it without a restart, formats and compression, and the reload endpoint's guards."""

from __future__ import annotations

import asyncio
import base64
import gzip
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from htap_exporter.simulator import sample_config
from tests.fakes import RunningSimulator
from tests.e2e.harness import Exporter, parse_samples, value, wait_until, write_config
from tests.webtls import Pki, bcrypt_hash, certificate_cn

pytestmark = pytest.mark.slow

PASSWORD = "scrape-password-0451"
OPENMETRICS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                      "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def web_yml(pki: Pki, *, users: dict[str, str] | None = None, tls: bool = True, extra_tls: str = "",
            extra: str = "") -> Path:
    text = ""
    if tls:
        text += f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra_tls}"
    if users:
        text += "basic_auth_users:\n" + "".join(f"  {u}: {bcrypt_hash(p)}\n" for u, p in users.items())
    return write_config(pki.directory / "web.yml", text + extra)


def https(pki: Pki, client: tuple[Path, Path] | None = None) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=pki.client_context(client), force_close=True))


async def fetch(session: aiohttp.ClientSession, url: str, user: str | None = None, password: str = "",
                method: str = "GET", **kwargs: object) -> tuple[int, dict[str, str], bytes]:
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        kwargs["headers"] = {**kwargs.get("headers", {}), "Authorization": f"Basic {token}"}  # type: ignore[dict-item]
    async with session.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, dict(response.headers), await response.read()


async def served_certificate(pki: Pki, address: str) -> str:
    """The common name of the certificate a new connection is served."""
    host, port = address.rsplit(":", 1)
    _, writer = await asyncio.open_connection(host.strip("[]"), int(port), ssl=pki.client_context(),
                                              server_hostname="localhost")
    try:
        return certificate_cn(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
    finally:
        writer.close()


async def test_tls_and_basic_auth_right_wrong_missing(pki: Pki) -> None:
    headers = "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
    path = web_yml(pki, users={"prometheus": PASSWORD}, extra=headers)
    async with Exporter(["--demo", "--web.config.file", str(path)], scheme="https") as exporter:
        assert exporter.url.startswith("https://127.0.0.1:")
        async with https(pki) as session:
            status, response_headers, body = await fetch(session, exporter.url + "/metrics", "prometheus", PASSWORD)
            assert status == 200
            assert value(parse_samples(body.decode()), "htap_exporter_build_info") == 1
            assert response_headers["X-Frame-Options"] == "deny"
            assert response_headers["X-Content-Type-Options"] == "nosniff"
            for user, password in (("prometheus", "wrong"), ("mallory", PASSWORD), (None, "")):
                for path_ in ("/metrics", "/", "/nowhere"):
                    status, response_headers, body = await fetch(session, exporter.url + path_, user, password)
                    assert status == 401, (user, path_)
                    assert response_headers["WWW-Authenticate"].startswith("Basic realm=")
                    assert response_headers["X-Frame-Options"] == "deny"
                    assert b"htap_" not in body
            status, _, _ = await fetch(session, exporter.url + "/-/reload", method="POST")
            assert status == 401  # reload needs the same credentials as /metrics
            status, _, body = await fetch(session, exporter.url + "/-/healthy")
            assert (status, body) == (200, b"Healthy.\n")  # probes carry no credentials
            status, _, _ = await fetch(session, exporter.url + "/-/ready")
            assert status in (200, 503)  # nor does a readiness probe: it never waits for a bcrypt check
        # Plain HTTP to the TLS port gets no metrics.
        async with aiohttp.ClientSession() as plain:
            with pytest.raises(aiohttp.ClientError):
                await fetch(plain, exporter.url.replace("https://", "http://") + "/metrics", "prometheus", PASSWORD)
    assert PASSWORD not in exporter.logs()


async def test_client_certificates_accepted_and_refused(pki: Pki) -> None:
    import trustme

    path = web_yml(pki, extra_tls="  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n")
    trusted = pki.client_cert("prometheus")
    stranger = pki.client_cert("stranger", trustme.CA())
    async with Exporter(["--demo", "--web.config.file", str(path)], scheme="https") as exporter:
        async with https(pki, trusted) as session:
            status, _, body = await fetch(session, exporter.url + "/metrics")
            assert status == 200 and b"htap_exporter_build_info" in body
        for client in (None, stranger):
            async with https(pki, client) as session:
                with pytest.raises(aiohttp.ClientError):
                    await fetch(session, exporter.url + "/metrics")


async def test_client_allowed_sans(pki: Pki) -> None:
    path = web_yml(pki, extra_tls="  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
                                  "  client_allowed_sans: [prometheus.example.com]\n")
    allowed = pki.client_cert("allowed", None, "prometheus.example.com")
    other = pki.client_cert("other", None, "grafana.example.com")
    async with Exporter(["--demo", "--web.config.file", str(path)], scheme="https") as exporter:
        async with https(pki, allowed) as session:
            assert (await fetch(session, exporter.url + "/metrics"))[0] == 200
        async with https(pki, other) as session:
            assert (await fetch(session, exporter.url + "/metrics"))[0] == 403


async def test_rotating_the_certificate_and_changing_the_password_need_no_restart(pki: Pki) -> None:
    path = web_yml(pki, users={"prometheus": "old-password"})
    async with Exporter(["--demo", "--web.config.file", str(path)], scheme="https") as exporter:
        pid = exporter.process.pid  # type: ignore[union-attr]
        address = exporter.url.removeprefix("https://")
        async with https(pki) as session:
            assert (await fetch(session, exporter.url + "/metrics", "prometheus", "old-password"))[0] == 200
        assert await served_certificate(pki, address) == "htap-exporter server"

        # A renewal tool writes a new certificate and key over the old files; the operator changes
        # the password in the web config.
        leaf = pki.ca.issue_cert("127.0.0.1", "localhost", common_name="htap-exporter renewed")
        (pki.directory / "server.crt").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        (pki.directory / "server.key").write_bytes(leaf.private_key_pem.bytes())
        web_yml(pki, users={"prometheus": "new-password"})

        async def renewed() -> bool:  # the files are looked at once a second
            return await served_certificate(pki, address) == "htap-exporter renewed"

        await wait_until(renewed, timeout=5, what="the renewed certificate served")
        async with https(pki) as session:
            async def old_refused() -> bool:
                return (await fetch(session, exporter.url + "/metrics", "prometheus", "old-password"))[0] == 401

            await wait_until(old_refused, timeout=5, what="the new password in force")
            assert (await fetch(session, exporter.url + "/metrics", "prometheus", "new-password"))[0] == 200

            # A broken file is logged with its key path and the last good config stays in force.
            write_config(path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                               "basic_auth_users:\n  prometheus: new-password\n")
            assert (await fetch(session, exporter.url + "/metrics", "prometheus", "new-password"))[0] == 200

            async def failure_logged() -> bool:
                return "web config reload failed" in exporter.logs()

            await wait_until(failure_logged, what="the failed reload in the log")
            assert "basic_auth_users.prometheus: not a bcrypt hash" in exporter.logs()
            assert "new-password" not in exporter.logs()

            # SIGHUP re-reads it too (here: after the file is fixed).
            web_yml(pki, users={"prometheus": "third-password"})
            loaded = exporter.logs().count("web config loaded")
            exporter.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

            async def reloaded() -> bool:
                return exporter.logs().count("web config loaded") > loaded

            await wait_until(reloaded, what="the SIGHUP reload")
            assert (await fetch(session, exporter.url + "/metrics", "prometheus", "third-password"))[0] == 200
        assert exporter.process.pid == pid and exporter.process.returncode is None  # type: ignore[union-attr]


@pytest.mark.parametrize("text, line", [
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Maybe\n",
     "tls_server_config.client_auth_type: invalid ClientAuth 'Maybe'"),
    ("basic_auth_users:\n  alice: secret-in-clear\n", "basic_auth_users.alice: not a bcrypt hash"),
    ("tls_server_config:\n  cert_file: nowhere.crt\n  key_file: server.key\n",
     "tls_server_config.cert_file: file not found"),
    ("colour: blue\n", "colour: unknown key"),
])
async def test_an_invalid_web_config_stops_the_start_with_one_line(pki: Pki, text: str, line: str) -> None:
    path = write_config(pki.directory / "web.yml", text)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "htap_exporter", "--demo", "--web.config.file", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"htap-exporter: {path}: {line}"), lines
    assert "secret-in-clear" not in stderr.decode()


async def test_openmetrics_gzip_head_and_name_filters(pki: Pki) -> None:
    async with Exporter(["--demo"]) as exporter:
        async def all_polled() -> bool:
            return (await exporter.get("/-/ready"))[0] == 200

        await wait_until(all_polled, what="the first polls")
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            url = exporter.url + "/metrics"
            # Default: text 0.0.4, not compressed.
            status, headers, body = await fetch(session, url, headers={"Accept-Encoding": "identity"})
            assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert "Content-Encoding" not in headers
            text_families = {f.name: f for f in text_string_to_metric_families(body.decode())}
            assert len([s for s in text_families["htap_up"].samples]) == 5

            # What Prometheus asks for: OpenMetrics 1.0, gzip.
            status, headers, body = await fetch(session, url, headers={"Accept": OPENMETRICS_ACCEPT,
                                                                      "Accept-Encoding": "gzip"})
            assert headers["Content-Type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
            assert headers["Content-Encoding"] == "gzip"
            document = gzip.decompress(body).decode()
            assert document.endswith("# EOF\n") and document.count("# EOF") == 1
            families = {f.name: f for f in parse_openmetrics(document)}  # the strict parser: it checks # EOF
            assert families["htap_poll_errors"].type == "counter"
            assert {s.name for s in families["htap_poll_errors"].samples} == {"htap_poll_errors_total"}
            assert families["htap_active_session_duration_seconds"].type == "gaugehistogram"
            assert len(families["htap_up"].samples) == 5
            # The same samples as the text format (the self-metrics' values move between scrapes).
            assert ({s.name for f in families.values() for s in f.samples}
                    == {s.name for f in text_families.values() for s in f.samples})

            # Text format, gzip: a second scrape of an unchanged store is still a complete, valid body.
            for _ in range(2):
                status, headers, body = await fetch(session, url, headers={"Accept-Encoding": "gzip"})
                assert headers["Content-Encoding"] == "gzip"
                parsed = list(text_string_to_metric_families(gzip.decompress(body).decode()))
                assert {f.name for f in parsed} >= {"htap_up", "htap_sessions", "process_cpu_seconds"}

            # HEAD: the headers of a GET, no body.
            status, headers, body = await fetch(session, url, method="HEAD", headers={"Accept-Encoding": "identity"})
            assert status == 200 and body == b""
            assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert int(headers["Content-Length"]) > 1000

            # name[] filters, as prometheus_client's handler does.
            status, headers, body = await fetch(
                session, url + "?name[]=htap_up&name[]=htap_poll_errors_total",
                headers={"Accept": OPENMETRICS_ACCEPT, "Accept-Encoding": "gzip"})
            document = gzip.decompress(body).decode()
            families = {f.name: f for f in parse_openmetrics(document)}
            assert set(families) == {"htap_up", "htap_poll_errors"}
            assert len(families["htap_up"].samples) == 5


async def test_listens_on_ipv4_and_ipv6_with_tls(pki: Pki) -> None:
    path = web_yml(pki)
    async with Exporter(["--demo", "--web.config.file", str(path), "--web.listen-address", "[::1]:0"],
                        scheme="https") as exporter:
        async def both() -> bool:
            return len(exporter.addresses()) == 2

        await wait_until(both, what="two listeners")
        ipv4, ipv6 = exporter.addresses()
        assert ipv4.startswith("127.0.0.1:") and ipv6.startswith("[::1]:")
        async with https(pki) as session:
            for address in (ipv4, ipv6):
                assert (await fetch(session, f"https://{address}/-/healthy"))[0] == 200


async def test_reload_refuses_cross_site_forms(simulator: RunningSimulator, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", sample_config(simulator.sim, simulator.base_url, interval="5s"))
    async with Exporter(["--config.file", str(config)]) as exporter:
        async def reloads() -> int:
            return exporter.logs().count("configuration reloaded")

        async with aiohttp.ClientSession() as session:
            url = exporter.url + "/-/reload"
            # What a page on another site makes a visitor's browser send.
            for headers, expected in (
                ({"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"}, 403),
                ({"Origin": "null", "Content-Type": "text/plain"}, 403),
                ({"Origin": "http://evil.example"}, 403),
                ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
                ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
                ({"Content-Type": "text/plain;charset=UTF-8"}, 415),
            ):
                for _ in range(3):
                    status, _, body = await fetch(session, url, method="POST", headers=headers, data=b"a=b")
                    assert status == expected, headers
                    assert b"curl -X POST" in body
            assert await reloads() == 0
            # curl -X POST, and a page of the exporter itself, may reload.
            assert (await fetch(session, url, method="POST"))[0] == 200
            own = {"Origin": exporter.url}
            assert (await fetch(session, url, method="POST", headers=own))[0] == 200
            assert (await fetch(session, url, method="POST", headers={"Content-Type": "application/json"}))[0] == 200

            async def three_logged() -> bool:
                return await reloads() >= 3

            # The log arrives through a pipe: wait for the three accepted reloads; a refused request
            # that had reloaded would show up before them, as a fourth.
            await wait_until(three_logged, what="three reloads in the log")
            assert await reloads() == 3


async def test_bcrypt_runs_beside_the_event_loop(pki: Pki) -> None:
    # Cost 14 (the highest allowed) takes about a second: the health endpoint answers while it runs.
    path = write_config(pki.directory / "web.yml", f"basic_auth_users:\n  slow: {bcrypt_hash('pw', 14)}\n")
    async with Exporter(["--demo", "--web.config.file", str(path)]) as exporter:
        async with aiohttp.ClientSession() as session:
            slow = asyncio.create_task(fetch(session, exporter.url + "/metrics", "slow", "pw"))
            # Were bcrypt on the event loop, every request after the slow one would wait seconds
            # for it, and the slow one would finish first.
            for _ in range(20):
                assert (await fetch(session, exporter.url + "/-/healthy"))[0] == 200
            assert not slow.done()
            assert (await slow)[0] == 200
