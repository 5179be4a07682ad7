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
