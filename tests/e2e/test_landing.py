"""The landing page in a real browser: headless Chromium renders every instance's state."""

from __future__ import annotations

import asyncio
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from htap_exporter.simulator import sample_config
from tests.fakes import RunningSimulator
from tests.e2e.harness import Exporter, by_label, wait_until, write_config

pytestmark = pytest.mark.slow

MISSING_ID = "f" * 32 + "in17"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path is not None:
            return path
    if os.environ.get("HTAP_REQUIRE_CHROMIUM") == "1":
        pytest.fail("chromium is required here (Debian package chromium)")
    pytest.skip("chromium not installed (Debian package chromium)")


async def run_chromium(profile: Path, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return stdout.decode()


class Table(HTMLParser):
    """The text of every table cell, row by row, and whether the DOM holds any script."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self.scripts = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        elif tag == "script" or (tag == "link" and dict(attrs).get("rel") == "stylesheet"):
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


async def test_landing_page_shows_every_instance_in_chromium(simulator: RunningSimulator, tmp_path: Path) -> None:
    # Fixed sessions, a different number per instance: the page and the scrape agree whenever
    # the polls run.
    for index, instance in enumerate(simulator.sim.instances.values()):
        instance.fixed_rows = instance.rows(0.0)[: 7 + 5 * index]
    text = sample_config(simulator.sim, simulator.base_url, interval="5s")
    text += f"      - id: {MISSING_ID}\n        name: vanished-<b>htap</b>\n"  # unknown to the cloud, and HTML in its name
    config = write_config(tmp_path / "config.yaml", text)
    async with Exporter(["--config.file", str(config)]) as exporter:
        async def ready() -> bool:
            return (await exporter.get("/-/ready"))[0] == 200

        await wait_until(ready, what="every instance's first poll")
        samples = await exporter.samples()
        sessions = by_label(samples, "htap_sessions", "instance_id")
        errors = {s.labels["reason"] for s in samples
                  if s.name == "htap_poll_errors_total" and s.labels["instance_id"] == MISSING_ID and s.value > 0}

        dom = await run_chromium(tmp_path / "profile", "--dump-dom", exporter.url + "/")
        page = Table()
        page.feed(dom)
        assert page.scripts == 0
        assert {"/metrics", "/-/healthy", "/-/ready"} <= set(page.links)
        header, *rows = page.rows
        assert header == ["Project", "Name", "Instance id", "State", "Last successful poll", "Sessions"]
        by_id = {row[2]: row for row in rows}
        assert set(by_id) == {*sessions, MISSING_ID} and len(rows) == 4
        for instance_id, count in sessions.items():
            project, name, _, state, last, shown = by_id[instance_id]
            assert project == simulator.sim.project_id
            assert name == simulator.sim.instances[instance_id].name
            assert state == "up"
            assert last.endswith(" s ago")
            assert shown == str(int(count)) == str(len(simulator.sim.instances[instance_id].fixed_rows or []))
        project, name, _, state, last, shown = by_id[MISSING_ID]
        assert name == "vanished-<b>htap</b>"  # shown as text, not markup
        assert state == f"down: {errors.pop()}" and not errors
        assert (last, shown) == ("never", "")

        screenshot = tmp_path / "landing.png"
        await run_chromium(tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1200,800",
                           exporter.url + "/")
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000
        if os.environ.get("HTAP_SCREENSHOT_DIR"):
            shutil.copy(screenshot, Path(os.environ["HTAP_SCREENSHOT_DIR"]) / "landing.png")


async def test_top_sessions_on_the_landing_page_behind_basic_auth(simulator: RunningSimulator, tmp_path: Path) -> None:
    """With collectors.top_sessions on, each instance's longest sessions are listed under it (duration,
    user, database, command, digest; never the statement), behind the same basic auth as /metrics."""
    import bcrypt
    instance, *others = simulator.sim.instances.values()
    for other in others:
        other.fixed_rows = []  # only one instance has sessions, so the page lists only its own
    instance.fixed_rows = [{"id": str(n), "user": f"user{n}", "host": "10.1.1.1:1", "state": "OK", "database": "dw",
                            "command": "Query", "duration": 600 + n, "sql_statement": f"SELECT {n} FROM t WHERE x = 'x'"}
                           for n in range(6)]
    text = sample_config(simulator.sim, simulator.base_url, interval="5s").replace(
        "poll:\n", "collectors:\n  top_sessions: {enabled: true, count: 3, min_duration: 60s, sql: digest}\npoll:\n")
    config = write_config(tmp_path / "config.yaml", text)
    password = "landing-secret"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    web_config = write_config(tmp_path / "web.yml", f"basic_auth_users:\n  ops: {hashed}\n")
    async with Exporter(["--config.file", str(config), "--web.config.file", str(web_config)]) as exporter:
        async def ready() -> bool:
            return (await exporter.get("/-/ready"))[0] == 200
        await wait_until(ready, what="every instance's first poll")
        status, _ = await exporter.get("/")
        assert status == 401  # the landing page needs the credentials /metrics needs

        authority = exporter.url.split("://", 1)[1]
        dom = await run_chromium(tmp_path / "profile", "--dump-dom", f"http://ops:{password}@{authority}/")
        page = Table()
        page.feed(dom)
        rows = [row for row in page.rows if row]
        header = next(row for row in rows if row[:2] == ["Running for", "Session id"])
        assert header == ["Running for", "Session id", "User", "Database", "Command", "SQL digest"]
        listed = [row for row in rows if len(row) == 6 and row[1].isdigit()]
        assert [row[1] for row in listed] == ["5", "4", "3"]  # the three longest, longest first
        assert [row[2:5] for row in listed] == [["user5", "dw", "Query"], ["user4", "dw", "Query"],
                                                 ["user3", "dw", "Query"]]
        assert all(len(row[5]) == 16 for row in listed)
        assert listed[0][0] == "10 min 05 s"
        assert "SELECT" not in dom and "'x'" not in dom
