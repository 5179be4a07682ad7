"""A real Prometheus server on loopback, started by a test with its own config and queried through
its HTTP API, the way dashboards and alerting read the exporter's data."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path
from typing import Any

import aiohttp

from tests.deploy.tools import DASHBOARD, require
from tests.e2e.harness import wait_until


def free_port() -> int:
    """Prometheus cannot bind port 0 and report it, so take a free one from the kernel."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape_config(exporter_urls: list[str], *, job: str = "htap-exporter", interval: str = "1s",
                  rule_files: tuple[str, ...] = ()) -> str:
    """A Prometheus config that scrapes these exporters (`http://host:port`) every `interval`."""
    targets = ", ".join(f"'{url.removeprefix('http://')}'" for url in exporter_urls)
    text = f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
    if rule_files:
        text += "rule_files: [" + ", ".join(f"'{name}'" for name in rule_files) + "]\n"
    return text + f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{targets}]\n"


class PrometheusServer:
    """`async with PrometheusServer(tmp_path, config_text) as server:` runs `prometheus` with that
    config (written to tmp_path/prometheus.yml, TSDB in tmp_path/data) until the block ends."""

    def __init__(self, directory: Path, config: str) -> None:
        self.directory = directory
        self.config = config
        self.url = ""
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> "PrometheusServer":
        binary = require("prometheus")
        config_file = self.directory / "prometheus.yml"
        config_file.write_text(self.config, encoding="utf-8")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._process = await asyncio.create_subprocess_exec(
            binary, f"--config.file={config_file}", f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            await self._process.wait()

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            async with session.get(self.url + path, params=params) as response:
                return await response.json(content_type=None)

    async def query(self, expr: str) -> dict[str, Any]:
        return await self.get("/api/v1/query", query=expr)

    async def result(self, expr: str) -> list[dict[str, Any]]:
        """The query's result vector; empty while the server is not listening yet or still starting
        ("Service Unavailable"), so that callers can wait on it."""
        try:
            answer = await self.query(expr)
        except (aiohttp.ClientError, ValueError):
            return []
        return answer["data"]["result"] if answer.get("status") == "success" else []


# --- the dashboard's queries, as Grafana sends them -----------------------------------------------

# What Grafana would substitute for a short dashboard range with a 1 s scrape interval.
GRAFANA_INTERVALS = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "5m"}


def dashboard_targets() -> list[tuple[str, dict[str, Any]]]:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [(panel["title"], target) for panel in panels for target in panel.get("targets", [])]


async def panels_without_data(api: PrometheusServer, targets: list[tuple[str, dict[str, Any]]],
                              values: dict[str, list[str]], timeout: float) -> list[str]:
    """Each panel query, with the dashboard's variables set to `values`, answered without an error;
    `title: query` of those that had no data within `timeout` seconds."""
    empty = []
    for title, target in targets:
        expr = substitute(target["expr"], values)

        async def has_data(query: str = expr) -> bool:
            return len(await api.result(query)) > 0

        answer = await api.query(expr)
        assert answer["status"] == "success", (title, expr, answer)
        try:
            await wait_until(has_data, timeout=timeout, what=title)
        except AssertionError:
            empty.append(f"{title}: {expr}")
    return empty


def substitute(expr: str, values: dict[str, list[str]]) -> str:
    """Grafana's substitution for a Prometheus query: multi-values become a regex alternation."""
    for name, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(name, value)
    for name, chosen in sorted(values.items(), key=lambda item: -len(item[0])):
        alternation = "(" + "|".join(re.sub(r"([\\.+*?()\[\]{}|^$])", r"\\\\\1", v) for v in chosen) + ")"
        expr = expr.replace("$" + name, alternation)
    assert "$" not in expr, expr
    return expr
