"""The real CLI: what is exported before any poll ends, and which series are never exported."""

from __future__ import annotations

from pathlib import Path

from exporter.simulator import SIM_TOKEN, Fault, instance_id_for
from tests.conftest import RunningSimulator
from tests.e2e.harness import Exporter, parse_samples, value, wait_until, write_config
from tests.e2e.test_faults import sim  # noqa: F401  (a simulator that cancels sleeping handlers at teardown)


def config_text(sim: RunningSimulator, instances: list[str], *, interval: str = "10s") -> str:
    listed = "".join(f"      - id: {i}\n        name: name-{i[:6]}\n" for i in instances)
    return (f"poll:\n  interval: {interval}\n  timeout: {interval}\n"
            "projects:\n"
            f"  - project_id: {sim.sim.project_id}\n"
            "    region: cn-north-4\n"
            f"    endpoint: {sim.base_url}\n"
            "    auth:\n      type: token\n      token: " + SIM_TOKEN + "\n"
            f"    instances:\n{listed}")


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
