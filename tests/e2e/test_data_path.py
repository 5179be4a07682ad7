"""The real CLI: what is exported before any poll ends, and which series are never exported."""

from __future__ import annotations

from pathlib import Path

import pytest

from htap_exporter.simulator import Fault, instance_id_for
from tests.fakes import RunningSimulator
from tests.e2e.harness import Exporter, listed_config, parse_samples, value, wait_until, write_config


def config_text(sim: RunningSimulator, instances: list[str], *, interval: str = "10s") -> str:
    return listed_config(sim, instances, poll=f"poll:\n  interval: {interval}\n  timeout: {interval}\n")


async def test_instance_info_is_exported_from_start_before_any_poll_ends(sim: RunningSimulator, tmp_path: Path):
    simulator = sim
    silent = instance_id_for(0)
    simulator.sim.faults[silent] = Fault(kind="delay", seconds=60)  # its first poll never ends here
    config = write_config(tmp_path / "config.yaml", config_text(simulator, [silent]))
    async with Exporter(["--config.file", str(config)]) as exporter:
        async def listed() -> bool:
            return value(parse_samples(await exporter.scrape()), "htap_instance_info", instance_id=silent) == 1
        await wait_until(listed, what="htap_instance_info of an instance whose poll has not ended")
        samples = parse_samples(await exporter.scrape())
        assert value(samples, "htap_instance_info", instance_id=silent, instance_name=f"name-{silent[:6]}",
                     project_id=simulator.sim.project_id, region="cn-north-4") == 1
        assert value(samples, "htap_poll_duration_seconds", instance_id=silent) is None  # no poll ended yet
        assert value(samples, "htap_sessions", instance_id=silent) is None
        assert value(samples, "htap_up", instance_id=silent) is None  # no `up` before the first poll ends
        assert value(samples, "htap_poll_errors_total", instance_id=silent, reason="timeout") == 0
        assert simulator.sim.observed.requests.get(silent, 0) <= 1


async def test_no_created_series_in_the_text_format(simulator: RunningSimulator, tmp_path: Path):
    instance = instance_id_for(0)
    config = write_config(tmp_path / "config.yaml", config_text(simulator, [instance], interval="1s"))
    async with Exporter(["--config.file", str(config)]) as exporter:
        async def polled() -> bool:
            return value(parse_samples(await exporter.scrape()), "htap_up", instance_id=instance) == 1
        await wait_until(polled, what="a successful poll")
        text = await exporter.scrape()
        assert "htap_api_requests_total{" in text
        assert "_created" not in text


def rss_peak_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.slow
async def test_memory_of_a_poll_is_one_page_not_the_whole_list(sim: RunningSimulator, tmp_path: Path):
    """Endless pages of 100 rows with 16 KB fields (6.4 MB a page, 256 MB over the 40 pages the
    poll may read): the poll fails as bad_response, and the process never held more than a few
    pages (holding every row until the poll ends took the peak RSS past 300 MB)."""
    simulator = sim
    healthy, hostile = instance_id_for(0), instance_id_for(1)
    simulator.sim.faults[hostile] = Fault(kind="endless", field_bytes=16 * 1024)
    config = write_config(tmp_path / "config.yaml",
                          config_text(simulator, [healthy, hostile], interval="2s").replace(
                              "poll:\n", "poll:\n  max_pages: 40\n  backoff_max: 60s\n"))
    async with Exporter(["--config.file", str(config)]) as exporter:
        assert exporter.process is not None
        async def failed() -> bool:
            samples = parse_samples(await exporter.scrape())
            return (value(samples, "htap_poll_errors_total", instance_id=hostile, reason="bad_response") or 0) >= 1
        await wait_until(failed, timeout=120, what="the endless poll to fail")
        assert simulator.sim.observed.requests.get(hostile, 0) >= 40
        peak_mb = rss_peak_kb(exporter.process.pid) / 1024
        assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB over a 256 MB poll"
        assert value(parse_samples(await exporter.scrape()), "htap_up", instance_id=healthy) == 1


async def test_long_and_control_character_label_values_are_capped_and_replaced(sim: RunningSimulator,
                                                                              tmp_path: Path):
    simulator = sim
    instance = instance_id_for(0)
    rows = [{"id": str(n), "user": f"user{n % 2}-" + "u" * 4096, "database": "bad\r\x00name",
             "host": "10.0.0.1:1", "state": "OK", "command": "Query", "duration": n} for n in range(6)]
    simulator.sim.instances[instance].fixed_rows = rows
    text = config_text(simulator, [instance], interval="1s").replace(
        "poll:\n", "metrics:\n  max_label_length: 64\npoll:\n")
    config = write_config(tmp_path / "config.yaml", text)
    async with Exporter(["--config.file", str(config)]) as exporter:
        async def polled() -> bool:
            return value(parse_samples(await exporter.scrape()), "htap_up", instance_id=instance) == 1
        await wait_until(polled, what="a successful poll")
        body = await exporter.scrape()
    samples = parse_samples(body)  # prometheus_client's parser refuses a raw CR in a label value
    users = {s.labels["user"]: s.value for s in samples
             if s.name == "htap_sessions_by_user" and s.labels["instance_id"] == instance}
    assert sorted(users.values()) == [3.0, 3.0]  # two users, still two after cutting
    assert all(len(user) == 64 for user in users)
    assert {user[:6] for user in users} == {"user0-", "user1-"}
    databases = {s.labels["database"] for s in samples
                 if s.name == "htap_sessions_by_database" and s.labels["instance_id"] == instance}
    assert databases == {"bad\ufffd\ufffdname"}
    assert "u" * 100 not in body and "\r" not in body and "\x00" not in body
