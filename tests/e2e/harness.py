"""Runs the real CLI as a subprocess and reads its metrics like Prometheus would."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Awaitable, Callable, Iterable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from htap_exporter.simulator import SIM_TOKEN
from tests.fakes import RunningSimulator

LISTENING = re.compile(r"listening on ([0-9A-Za-z.:\[\]]+)")
WAIT_STEP = 0.05


class Exporter:
    """`python -m htap_exporter ARGS` bound to 127.0.0.1:0; stderr is collected for log checks."""

    def __init__(self, args: Iterable[str], env: dict[str, str] | None = None,
                 preexec_fn: Callable[[], None] | None = None, scheme: str = "http",
                 prefix: Iterable[str] = (), cwd: Path | None = None) -> None:
        self.args = ["--web.listen-address", "127.0.0.1:0", *args]
        self.prefix = list(prefix)  # a command that runs the exporter, e.g. in a mount namespace
        self.cwd = cwd
        self.scheme = scheme
        self.env = {**os.environ, **(env or {})}
        self.preexec_fn = preexec_fn  # runs in the child before exec, e.g. to set resource limits
        self.process: asyncio.subprocess.Process | None = None
        self.log_lines: list[str] = []
        self.url = ""
        self._reader: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self, timeout: float = 20.0) -> "Exporter":
        self.process = await asyncio.create_subprocess_exec(
            *self.prefix, sys.executable, "-m", "htap_exporter", *self.args, env=self.env, cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, preexec_fn=self.preexec_fn)
        self._reader = asyncio.create_task(self._read_stderr())
        waiter = asyncio.create_task(self._listening.wait())
        exited = asyncio.create_task(self.process.wait())
        done, _ = await asyncio.wait({waiter, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        exited.cancel()
        if not self._listening.is_set():
            await self.stop()
            raise AssertionError("exporter did not start:\n" + self.logs())
        return self

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.log_lines.append(line)
            match = LISTENING.search(line)
            if match and not self.url:
                self.url = f"{self.scheme}://" + match.group(1)
                self._listening.set()

    def addresses(self) -> list[str]:
        """Every `HOST:PORT` the exporter said it listens on."""
        return [m.group(1) for line in self.log_lines if (m := LISTENING.search(line))]

    def logs(self) -> str:
        return "\n".join(self.log_lines)

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session:
            async with session.get(self.url + path) as response:
                return response.status, await response.text()

    async def post(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session:
            async with session.post(self.url + path) as response:
                return response.status, await response.text()

    async def scrape(self) -> str:
        status, text = await self.get("/metrics")
        assert status == 200, text
        return text

    async def samples(self) -> list[Sample]:
        return parse_samples(await self.scrape())

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return self.process.returncode

    async def __aenter__(self) -> "Exporter":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def parse_samples(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The value of the one sample with this name and (at least) these labels, None if absent."""
    found = [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, f"{len(found)} samples match {name} {labels}"
    return found[0].value if found else None


def by_label(samples: list[Sample], name: str, label: str, **labels: str) -> dict[str, float]:
    """{value of `label`: sample value} over the samples of `name` that carry `labels`."""
    return {s.labels[label]: s.value for s in samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())}


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "condition") -> None:
    """Polls `condition` until true; the exporter runs in another process, so there is no event to await."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await condition():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(WAIT_STEP)


def split_polls(times: list[float], gap: float) -> list[list[float]]:
    """Request times -> groups of pages that came back to back, less than `gap` apart (one poll each)."""
    polls: list[list[float]] = []
    for t in times:
        if polls and t - polls[-1][-1] < gap:
            polls[-1].append(t)
        else:
            polls.append([t])
    return polls


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def listed_config(sim: RunningSimulator, instances: Iterable[str], *, poll: str, sections: str = "",
                  taurus: bool = False) -> str:
    """A config of one token-authenticated project listing `instances` of the simulator; `poll` is
    the poll section's text, `sections` any others; `taurus`: each instance's TaurusDB id too."""
    listed = "".join(f"      - id: {i}\n        name: name-{i[:6]}\n"
                     + (f"        taurus_instance_id: {sim.sim.instances[i].taurus_id}\n" if taurus else "")
                     for i in instances)
    return (poll + sections +
            "projects:\n"
            f"  - project_id: {sim.sim.project_id}\n"
            "    region: cn-north-4\n"
            f"    endpoint: {sim.base_url}\n"
            "    auth:\n      type: token\n      token: " + SIM_TOKEN + "\n"
            f"    instances:\n{listed}")
