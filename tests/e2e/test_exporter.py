"""The real CLI against the simulator: config in, exact metrics out, as a user runs it."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

import pytest

from htap_exporter import __version__, revision
from htap_exporter.simulator import SIM_TOKEN, instance_id_for
from tests.fakes import RunningSimulator
from tests.e2e.harness import Exporter, by_label, parse_samples, split_polls, value, wait_until, write_config

SECRET_SQL = "SELECT card_number FROM payments WHERE owner = 'top-secret-customer'"
ROWS_A = [
    {"id": "1", "user": "etl", "host": "10.0.0.1:5001", "state": "OK", "database": "sales",
     "sql_statement": SECRET_SQL, "duration": 10, "command": "Query"},
    {"id": "2", "user": "etl", "host": "10.0.0.1:5002", "state": "OK", "database": "sales",
     "sql_statement": "", "duration": "400", "command": "Sleep"},
    {"id": "3", "user": "bi", "host": "10.0.0.2:6000", "state": "ERR", "database": "",
     "sql_statement": SECRET_SQL, "duration": 75.5, "command": "Query"},
    {"id": "4", "user": "", "host": "[::1]:7000", "state": "EOF", "database": "dw",
     "sql_statement": SECRET_SQL, "duration": "junk", "command": "Init DB"},
    {"id": "5", "user": "root", "host": "10.0.0.3:1", "state": "OK", "database": "dw",
     "duration": 2, "command": "Daemon"},
]
# 250 sessions: three pages of 100, 100 and 50.
ROWS_B = [{"id": str(n), "user": "app", "host": f"10.1.0.{n % 200}:{4000 + n}", "state": "OK", "database": "orders",
           "sql_statement": "select 1", "duration": n, "command": "Query" if n % 5 == 0 else "Sleep"}
          for n in range(250)]
MISSING_ID = "f" * 32 + "in17"


def config_text(sim: RunningSimulator, *, interval: str = "1s", hosts: bool = True, extra_instances: str = "") -> str:
    a, b = instance_id_for(0), instance_id_for(1)
    return f"""
poll:
  interval: {interval}
  timeout: 1s
  concurrency: 4
metrics:
  max_users: 2
  max_databases: 5
  hosts: {str(hosts).lower()}
  idle_commands: [Sleep, Daemon]
  duration_buckets: [1, 5, 10, 30, 60, 300]
projects:
  - project_id: {sim.sim.project_id}
    region: cn-north-4
    endpoint: {sim.base_url}
    auth:
      type: token
      token_file: token.txt
    instances:
      - id: {a}
        name: orders-htap
      - id: {b}
      - id: {MISSING_ID}
        name: gone
{extra_instances}"""


@pytest.fixture
def config_file(tmp_path, simulator: RunningSimulator):
    (tmp_path / "token.txt").write_text(SIM_TOKEN + "\n")
    simulator.sim.instances[instance_id_for(0)].fixed_rows = ROWS_A
    simulator.sim.instances[instance_id_for(1)].fixed_rows = ROWS_B
    return write_config(tmp_path / "config.yaml", config_text(simulator))


async def polled(exporter: Exporter, instance_id: str) -> bool:
    return value(await exporter.samples(), "htap_up", instance_id=instance_id) is not None


async def test_every_documented_metric_with_exact_values(config_file, simulator: RunningSimulator) -> None:
    a, b = instance_id_for(0), instance_id_for(1)
    async with Exporter(["--config.file", str(config_file)]) as exporter:
        for instance_id in (a, b, MISSING_ID):
            await wait_until(lambda i=instance_id: polled(exporter, i), what=f"first poll of {instance_id}")
        text = await exporter.scrape()
        samples = parse_samples(text)

    assert SECRET_SQL not in text and "card_number" not in text
    A = {"instance_id": a, "instance_name": "orders-htap"}
    assert value(samples, "htap_up", **A) == 1
    assert value(samples, "htap_sessions", **A) == 5
    assert by_label(samples, "htap_sessions_by_state", "state", instance_id=a) == \
        {"OK": 3, "ERR": 1, "EOF": 1, "NOOP": 0}
    assert by_label(samples, "htap_sessions_by_command", "command", instance_id=a) == \
        {"Query": 2, "Sleep": 1, "Init DB": 1, "Daemon": 1}
    # max_users 2: etl (2), then bi wins the tie at 1 by name; root and the empty user fold.
    assert by_label(samples, "htap_sessions_by_user", "user", instance_id=a) == \
        {"etl": 2, "bi": 1, "__other__": 2}
    assert by_label(samples, "htap_sessions_by_database", "database", instance_id=a) == \
        {"sales": 2, "dw": 2, "unknown": 1}
    assert by_label(samples, "htap_sessions_by_host", "host", instance_id=a) == \
        {"10.0.0.1": 2, "10.0.0.2": 1, "::1": 1, "10.0.0.3": 1}
    assert by_label(samples, "htap_session_max_duration_seconds", "command", instance_id=a) == \
        {"Query": 75.5, "Sleep": 400, "Daemon": 2}
    buckets = by_label(samples, "htap_active_session_duration_seconds_bucket", "le", instance_id=a)
    assert buckets == {"1.0": 0, "5.0": 0, "10.0": 1, "30.0": 1, "60.0": 1, "300.0": 2, "+Inf": 2}
    assert value(samples, "htap_active_session_duration_seconds_gcount", **A) == 2
    assert value(samples, "htap_active_session_duration_seconds_gsum", **A) == 85.5
    assert value(samples, "htap_instance_info", **A, project_id=simulator.sim.project_id, region="cn-north-4") == 1
    assert value(samples, "htap_poll_duration_seconds", **A) > 0
    assert abs(value(samples, "htap_last_poll_success_timestamp_seconds", **A) - time.time()) < 60
    for reason in ("auth", "throttled", "timeout", "network", "http", "bad_response"):
        assert value(samples, "htap_poll_errors_total", **A, reason=reason) == 0

    # Three pages, every session counted once; the unnamed instance is named by its id.
    assert value(samples, "htap_sessions", instance_id=b, instance_name=b) == 250
    assert value(samples, "htap_sessions_by_command", instance_id=b, command="Query") == 50
    assert value(samples, "htap_session_max_duration_seconds", instance_id=b, command="Query") == 245
    # Three pages a poll (pages of one poll come back to back, polls a second apart); the last poll
    # may have been cut short by the exporter's stop.
    polls = split_polls(simulator.sim.observed.request_times[b], 0.4)
    assert [len(poll) for poll in polls[:-1]] == [3] * (len(polls) - 1) and 1 <= len(polls[-1]) <= 3, polls

    # An instance the API does not know: up 0, the http reason counted, no session series.
    assert value(samples, "htap_up", instance_id=MISSING_ID, instance_name="gone") == 0
    assert value(samples, "htap_poll_errors_total", instance_id=MISSING_ID, reason="http") >= 1
    assert value(samples, "htap_sessions", instance_id=MISSING_ID) is None
    assert value(samples, "htap_last_poll_success_timestamp_seconds", instance_id=MISSING_ID) is None

    assert value(samples, "htap_exporter_build_info", version=__version__, revision=revision(),
                 pythonversion=platform.python_version()) == 1
    assert value(samples, "htap_config_last_reload_successful") == 1
    assert value(samples, "htap_api_requests_total", api="list_sessions", code="200") >= 4
    assert value(samples, "htap_api_requests_total", api="list_sessions", code="400") >= 1
    assert value(samples, "htap_api_request_duration_seconds_count", api="list_sessions") >= 5


async def test_promtool_accepts_the_output(config_file) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("HTAP_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool is required here (Debian package prometheus)")
        pytest.skip("promtool not installed (Debian package prometheus)")
    async with Exporter(["--config.file", str(config_file)]) as exporter:
        await wait_until(lambda: polled(exporter, instance_id_for(1)), what="first poll")
        text = await exporter.scrape()
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == "" and result.stderr.decode().strip() == ""


async def test_demo_shows_several_live_instances() -> None:
    async with Exporter(["--demo"]) as exporter:
        async def all_up() -> bool:
            samples = await exporter.samples()
            return sum(1 for s in samples if s.name == "htap_up" and s.value == 1) == 5
        await wait_until(all_up, what="five simulated instances up")
        samples = await exporter.samples()
        assert all(value(samples, "htap_sessions", instance_id=s.labels["instance_id"]) > 0
                   for s in samples if s.name == "htap_up")
        status, _ = await exporter.get("/-/ready")
        assert status == 200


async def test_endpoints_readiness_and_prompt_sigterm(tmp_path, simulator: RunningSimulator) -> None:
    (tmp_path / "token.txt").write_text(SIM_TOKEN)
    # A long interval: the first poll of the last instance is spread 40 s into it.
    config = write_config(tmp_path / "config.yaml", config_text(simulator, interval="60s"))
    exporter = await Exporter(["--config.file", str(config), "--web.telemetry-path", "/probe"]).start()
    try:
        status, body = await exporter.get("/-/ready")
        assert status == 503, body
        status, body = await exporter.get("/-/healthy")
        assert status == 200
        status, body = await exporter.get("/")
        assert status == 200 and 'href="/probe"' in body
        status, body = await exporter.get("/probe")
        assert status == 200 and "htap_exporter_build_info" in body
        status, _ = await exporter.get("/metrics")
        assert status == 404
    finally:
        started = time.monotonic()
        code = await exporter.stop(signal.SIGTERM)
    assert code == 0
    assert time.monotonic() - started < 5
    assert "Traceback" not in exporter.logs()


async def test_bad_config_exits_1_with_one_line(tmp_path) -> None:
    config = write_config(tmp_path / "config.yaml", "projects:\n  - project_id: nope\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "htap_exporter", "--config.file", str(config), "--web.listen-address", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 1
    lines = err.decode().strip().splitlines()
    assert lines == [f"htap-exporter: {config}: projects[0]: missing region"], lines
