"""A real Prometheus server scrapes the exporter: the path every user's data takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import Exporter, wait_until
from tests.e2e.prometheus import PrometheusServer, scrape_config


async def test_prometheus_scrapes_the_demo(tmp_path: Path) -> None:
    async with Exporter(["--demo"]) as exporter:
        async with PrometheusServer(tmp_path, scrape_config([exporter.url])) as server:
            async def five_up() -> bool:
                return len(await server.result("htap_up == 1")) == 5

            await wait_until(five_up, timeout=60, what="Prometheus to see five instances up")
            health = await server.result('up{job="htap-exporter"}')
            assert [r["value"][1] for r in health] == ["1"]
            # The gauge histogram and the capped labels arrive as series Prometheus can query.
            assert len(await server.result('htap_active_session_duration_seconds_bucket{le="+Inf"}')) == 5
            assert len(await server.result(
                "sum by (instance_id) (htap_sessions_by_state) == on(instance_id) htap_sessions")) == 5


@pytest.mark.slow
async def test_prometheus_scrapes_through_tls_and_basic_auth(tmp_path: Path) -> None:
    """The README's secured scrape_configs, verbatim but for paths and the port, against the web config."""
    from tests.webtls import Pki, bcrypt_hash

    pki = Pki.create(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                   f"basic_auth_users:\n  prometheus: {bcrypt_hash('scrape-secret')}\n")
    (tmp_path / "password").write_text("scrape-secret\n")
    async with Exporter(["--demo", "--web.config.file", str(web)], scheme="https") as exporter:
        target = exporter.url.removeprefix("https://")
        config = f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: htap-exporter
    scheme: https
    tls_config:
      ca_file: {pki.ca_file}
    basic_auth:
      username: prometheus
      password_file: {tmp_path / 'password'}
    static_configs:
      - targets: ['{target}']
"""
        async with PrometheusServer(tmp_path, config) as server:
            async def five_sessions() -> bool:
                return len(await server.result("htap_sessions")) == 5

            await wait_until(five_sessions, timeout=60, what="Prometheus to answer htap_sessions for five instances")
            assert [r["value"][1] for r in await server.result('up{job="htap-exporter"}')] == ["1"]
            assert all(float(r["value"][1]) > 0 for r in await server.result("htap_sessions"))
