"""A real Prometheus server scrapes the exporter: the path every user's data takes."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.harness import Exporter, wait_until


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("HTAP_REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"{tool} is required here (Debian package prometheus)")
        pytest.skip(f"{tool} not installed (Debian package prometheus)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_prometheus_scrapes_the_demo(tmp_path: Path) -> None:
    prometheus = require("prometheus")
    async with Exporter(["--demo"]) as exporter:
        target = exporter.url.removeprefix("http://")
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n"
            f"scrape_configs:\n  - job_name: htap\n    static_configs:\n      - targets: ['{target}']\n")
        port = free_port()
        server = await asyncio.create_subprocess_exec(
            prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            api = f"http://127.0.0.1:{port}/api/v1"

            async def query(expr: str) -> list[dict]:
                try:
                    async with aiohttp.ClientSession() as session:
                        async with session.get(f"{api}/query", params={"query": expr}) as response:
                            if response.status != 200:
                                return []
                            return (await response.json())["data"]["result"]
                except aiohttp.ClientError:
                    return []

            async def five_up() -> bool:
                return len(await query("htap_up == 1")) == 5

            await wait_until(five_up, timeout=60, what="Prometheus to see five instances up")
            health = await query('up{job="htap"}')
            assert [r["value"][1] for r in health] == ["1"]
            # The gauge histogram and the capped labels arrive as series Prometheus can query.
            assert len(await query('htap_active_session_duration_seconds_bucket{le="+Inf"}')) == 5
            assert len(await query("sum by (instance_id) (htap_sessions_by_state) == on(instance_id) htap_sessions")) == 5
        finally:
            server.terminate()
            await server.wait()


@pytest.mark.slow
async def test_prometheus_scrapes_through_tls_and_basic_auth(tmp_path: Path) -> None:
    """The README's secured scrape_configs, verbatim but for paths and the port, against the web config."""
    from tests.webtls import Pki, bcrypt_hash

    prometheus = require("prometheus")
    pki = Pki.create(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                   f"basic_auth_users:\n  prometheus: {bcrypt_hash('scrape-secret')}\n")
    (tmp_path / "password").write_text("scrape-secret\n")
    async with Exporter(["--demo", "--web.config.file", str(web)], scheme="https") as exporter:
        target = exporter.url.removeprefix("https://")
        (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: htap
    scheme: https
    tls_config:
      ca_file: {pki.ca_file}
    basic_auth:
      username: prometheus
      password_file: {tmp_path / 'password'}
    static_configs:
      - targets: ['{target}']
""")
        port = free_port()
        server = await asyncio.create_subprocess_exec(
            prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            api = f"http://127.0.0.1:{port}/api/v1"

            async def query(expr: str) -> list[dict]:
                try:
                    async with aiohttp.ClientSession() as session:
                        async with session.get(f"{api}/query", params={"query": expr}) as response:
                            if response.status != 200:
                                return []
                            return (await response.json())["data"]["result"]
                except aiohttp.ClientError:
                    return []

            async def five_sessions() -> bool:
                return len(await query("htap_sessions")) == 5

            await wait_until(five_sessions, timeout=60, what="Prometheus to answer htap_sessions for five instances")
            assert [r["value"][1] for r in await query('up{job="htap"}')] == ["1"]
            assert all(float(r["value"][1]) > 0 for r in await query("htap_sessions"))
        finally:
            server.terminate()
            await server.wait()
