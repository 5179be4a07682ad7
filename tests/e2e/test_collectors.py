"""The collectors beyond the session list, through the real CLI against the simulator: off by
default, each on its own endpoint, failing alone, recovering; top sessions bounded and SQL-free."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from htap_exporter.simulator import Fault, instance_id_for, taurus_id_for
from tests.e2e.harness import Exporter, listed_config, parse_samples, value, wait_until, write_config
from tests.fakes import RunningSimulator

SIBLING_APIS = ("list_replications", "list_nodes", "show_starrocks_instance", "show_query_queue_rule")
ALL_ON = ("collectors:\n"
          "  top_sessions: {enabled: true, count: 3, min_duration: 0s, sql: fingerprint}\n"
          "  replication: {enabled: true, interval: 1s}\n"
          "  nodes: {enabled: true, interval: 1s}\n"
          "  query_queue: {enabled: true, interval: 1s}\n")


def config_text(sim: RunningSimulator, instances: list[str], *, collectors: str = "", taurus: bool = True) -> str:
    return listed_config(sim, instances, poll="poll:\n  interval: 1s\n  timeout: 1s\n  backoff_max: 2s\n",
                         sections=collectors, taurus=taurus)


async def test_collectors_are_off_by_default_not_one_request(sim: RunningSimulator, tmp_path: Path):
    instance = instance_id_for(0)
    config = write_config(tmp_path / "config.yaml", config_text(sim, [instance]))
    async with Exporter(["--config.file", str(config)]) as exporter:
        async def polled_thrice() -> bool:
            return sim.sim.observed.requests.get(instance, 0) >= 3
        await wait_until(polled_thrice, what="three session polls")
        text = await exporter.scrape()
    assert not any(sim.sim.observed.calls.get(api) for api in SIBLING_APIS), sim.sim.observed.calls
    assert "htap_replication_" not in text and "htap_node" not in text and "htap_query_queue" not in text
    assert "htap_top_session" not in text
    assert 'collector="sessions"' in text and 'collector="replication"' not in text


async def test_one_collector_failing_hides_only_its_own_series_and_recovers(sim: RunningSimulator, tmp_path: Path):
    broken, healthy = instance_id_for(0), instance_id_for(1)
    config = write_config(tmp_path / "config.yaml", config_text(sim, [broken, healthy], collectors=ALL_ON))
    async with Exporter(["--config.file", str(config)]) as exporter:
        async def everything_in() -> bool:
            samples = parse_samples(await exporter.scrape())
            return all(value(samples, "htap_collector_success", instance_id=i, collector=c) == 1
                       for i in (broken, healthy)
                       for c in ("sessions", "top_sessions", "replication", "nodes", "query_queue"))
        await wait_until(everything_in, what="every collector succeeding for both instances")

        sim.sim.faults[f"list_replications:{broken}"] = Fault(kind="status", status=500, error_code="DBS.05000000")

        async def replication_failed() -> bool:
            samples = parse_samples(await exporter.scrape())
            return value(samples, "htap_collector_success", instance_id=broken, collector="replication") == 0
        await wait_until(replication_failed, what="the broken instance's replication collector to fail")
        samples = parse_samples(await exporter.scrape())
        # Its replication series are gone; everything else of it, and the other instance, stay.
        assert value(samples, "htap_replication_tasks", instance_id=broken, stage="incremental") is None
        assert value(samples, "htap_replication_tasks", instance_id=healthy, stage="incremental") is not None
        assert value(samples, "htap_up", instance_id=broken) == 1
        for collector in ("sessions", "top_sessions", "nodes", "query_queue"):
            assert value(samples, "htap_collector_success", instance_id=broken, collector=collector) == 1, collector
        assert value(samples, "htap_nodes", instance_id=broken, role="be") is not None
        assert value(samples, "htap_query_queue_enabled", instance_id=broken) is not None
        assert value(samples, "htap_collector_errors_total", instance_id=broken, collector="replication",
                     reason="http") >= 1
        assert value(samples, "htap_collector_errors_total", instance_id=healthy, collector="replication",
                     reason="http") == 0
        assert value(samples, "htap_poll_errors_total", instance_id=broken, reason="http") == 0

        del sim.sim.faults[f"list_replications:{broken}"]

        async def recovered() -> bool:
            samples = parse_samples(await exporter.scrape())
            return (value(samples, "htap_collector_success", instance_id=broken, collector="replication") == 1
                    and value(samples, "htap_replication_tasks", instance_id=broken, stage="incremental") is not None)
        await wait_until(recovered, timeout=30, what="the replication collector to recover")


async def test_garbage_from_one_endpoint_is_bad_response_for_that_collector(sim: RunningSimulator, tmp_path: Path):
    instance = instance_id_for(0)
    config = write_config(tmp_path / "config.yaml", config_text(sim, [instance], collectors=ALL_ON))
    sim.sim.faults["show_query_queue_rule"] = Fault(kind="garbage")
    async with Exporter(["--config.file", str(config)]) as exporter:
        # The collectors poll on their own schedules: wait for the failure and for the first
        # success of the session poll and of the node collector, whichever lands last.
        async def counted() -> bool:
            samples = parse_samples(await exporter.scrape())
            return ((value(samples, "htap_collector_errors_total", instance_id=instance, collector="query_queue",
                           reason="bad_response") or 0) >= 1
                    and value(samples, "htap_up", instance_id=instance) is not None
                    and value(samples, "htap_collector_success", instance_id=instance, collector="nodes") is not None)
        await wait_until(counted, what="a bad_response of the query-queue collector and the others' first polls")
        samples = parse_samples(await exporter.scrape())
        assert value(samples, "htap_query_queue_enabled", instance_id=instance) is None
        assert value(samples, "htap_collector_success", instance_id=instance, collector="nodes") == 1
        assert value(samples, "htap_up", instance_id=instance) == 1
        assert "Traceback" not in exporter.logs()


async def test_node_status_needs_the_taurus_id_and_says_so_once_per_project(sim: RunningSimulator, tmp_path: Path):
    instances = [instance_id_for(0), instance_id_for(1)]
    config = write_config(tmp_path / "config.yaml", config_text(
        sim, instances, collectors="collectors:\n  nodes: {enabled: true, interval: 1s}\n", taurus=False))
    async with Exporter(["--config.file", str(config)]) as exporter:
        async def three_runs_each() -> bool:
            return sim.sim.observed.calls.get("list_nodes", 0) >= 6
        await wait_until(three_runs_each, what="three runs of the node collector for each instance")
        samples = parse_samples(await exporter.scrape())
        logs = exporter.logs()
    for instance in instances:
        assert value(samples, "htap_nodes", instance_id=instance, role="fe-leader") == 1
    assert not any(sample.name == "htap_node_status" for sample in samples)
    assert sim.sim.observed.calls.get("show_starrocks_instance", 0) == 0
    # One line for the project, not one per instance.
    assert logs.count("node status needs the TaurusDB instance id") == 1
    assert taurus_id_for(0) not in logs and taurus_id_for(1) not in logs


def _holds_number(text: str, number: str) -> bool:
    """Whether `number` stands in `text` on its own: not inside a longer number, a word or a float."""
    return re.search(rf"(?<![\w.]){re.escape(number)}(?![\w.])", text) is not None


async def test_top_sessions_are_bounded_and_no_sql_text_leaves(sim: RunningSimulator, tmp_path: Path):
    instance = instance_id_for(0)
    statement = "SELECT * FROM orders WHERE customer = 'Alice-secret-4242' AND total > 31337"
    rows = [{"id": str(n), "user": "app", "host": "10.0.0.1:5000", "state": "OK", "database": "shop",
             "command": "Query" if n % 2 else "Sleep", "duration": 1000 + n, "sql_statement": statement}
            for n in range(40)]
    sim.sim.instances[instance].fixed_rows = rows
    for sql in ("none", "digest", "fingerprint"):
        collectors = f"collectors:\n  top_sessions: {{enabled: true, count: 4, min_duration: 0s, sql: {sql}}}\n"
        config = write_config(tmp_path / f"{sql}.yaml", config_text(sim, [instance], collectors=collectors))
        async with Exporter(["--config.file", str(config), "--log.level", "debug"]) as exporter:
            async def listed() -> bool:
                return "htap_top_session_duration_seconds{" in await exporter.scrape()
            await wait_until(listed, what="top sessions")
            text = await exporter.scrape()
            _, landing = await exporter.get("/")
            logs = exporter.logs()
        top = [line for line in text.splitlines() if line.startswith("htap_top_session_duration_seconds{")]
        # The four longest non-idle (odd ids: Query) sessions, longest first on the landing page.
        assert sorted(re.search(r'session_id="(\d+)"', line).group(1) for line in top) == ["33", "35", "37", "39"]
        for output in (text, landing, logs):
            # The numbers as literals, not as digits inside another number: a timestamp such as
            # 1.796594242410906e+09 holds 4242.
            assert "Alice" not in output and not _holds_number(output, "31337") and not _holds_number(output, "4242")
            assert "customer" not in output or sql == "fingerprint"
        digests = set(re.findall(r'sql_digest="([0-9a-f]+)"', text))
        assert len(digests) == (0 if sql == "none" else 1)
        if sql == "fingerprint":
            assert "customer = ?" in text
        if sql != "none":
            assert digests.pop() in landing
        assert "Longest-running sessions" in landing


@pytest.mark.parametrize("fault, reason", [
    (Fault(kind="status", status=400, error_code="DBS.200001", error_msg="Invalid parameter."), "http"),
    (Fault(kind="status", status=503, error_code="DBS.05000000"), "http"),
    (Fault(kind="throttle", status=429, error_code="APIG.0308"), "throttled"),
    (Fault(kind="delay", seconds=30), "timeout"),
    (Fault(kind="html"), "http"),  # a proxy's 502 page
    (Fault(kind="garbage"), "bad_response"),
    (Fault(kind="oversize", size=64 * 1024), "bad_response"),  # over poll.max_body_bytes below
], ids=["400", "503", "429", "timeout", "html", "garbage", "oversize"])
async def test_each_kind_of_failure_of_a_collector_is_its_own(sim: RunningSimulator, tmp_path: Path,
                                                              fault: Fault, reason: str):
    instance = instance_id_for(0)
    text = config_text(sim, [instance], collectors="collectors:\n  nodes: {enabled: true, interval: 1s}\n")
    config = write_config(tmp_path / "config.yaml", text.replace("poll:\n", "poll:\n  max_body_bytes: 32768\n"))
    sim.sim.faults["list_nodes"] = fault
    async with Exporter(["--config.file", str(config)]) as exporter:
        # The session poll runs on its own schedule: its first result may land after the failure.
        async def counted() -> bool:
            samples = parse_samples(await exporter.scrape())
            return ((value(samples, "htap_collector_errors_total", instance_id=instance, collector="nodes",
                           reason=reason) or 0) >= 1
                    and value(samples, "htap_up", instance_id=instance) is not None)
        await wait_until(counted, timeout=30, what=f"a {reason} error of the node collector and the first session poll")
        samples = parse_samples(await exporter.scrape())
        assert value(samples, "htap_collector_success", instance_id=instance, collector="nodes") == 0
        assert value(samples, "htap_nodes", instance_id=instance, role="be") is None
        assert value(samples, "htap_up", instance_id=instance) == 1
        assert value(samples, "htap_collector_success", instance_id=instance, collector="sessions") == 1
        assert value(samples, "htap_poll_errors_total", instance_id=instance, reason=reason) == 0
