"""The real CLI against the simulator under faults: the API, the network and the config misbehave.

Every test runs one exporter process with a healthy neighbour and (usually) one faulty instance,
and checks both sides: the faulty instance is reported down with the right reason, its session
series vanish and one log line says why; the neighbour keeps its cadence and its values. Timing is
judged from the request times the simulator recorded, with generous margins (noisy 2-core hosts).
"""

from __future__ import annotations

import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from aiohttp import web

from htap_exporter import __version__
from htap_exporter.simulator import SIM_TOKEN, Fault, instance_id_for
from tests.fakes import RunningSimulator
from tests.e2e.harness import Exporter, by_label, split_polls, value, wait_until, write_config

INTERVAL = 0.5  # seconds; poll.interval of every test below but the graceful-stop one
HEALTHY = instance_id_for(0)
FAULTY = instance_id_for(1)
SPARE = instance_id_for(2)
NAMES = {HEALTHY: "healthy-htap", FAULTY: "faulty-htap", SPARE: "spare-htap"}
REASONS = ("auth", "throttled", "timeout", "network", "http", "bad_response")


def rows(count: int, *, prefix: str = "") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{n}", "user": "app", "host": f"10.0.0.{n % 250}:{4000 + n}", "state": "OK",
             "database": "orders", "sql_statement": "select 1", "duration": n,
             "command": "Query" if n % 2 else "Sleep"} for n in range(count)]


ROWS = {HEALTHY: rows(7), FAULTY: rows(5), SPARE: rows(3)}


# --- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture
def sim(sim: RunningSimulator) -> RunningSimulator:
    """The e2e `sim` (tests/e2e/conftest.py) serving the fixed rows of ROWS."""
    for instance_id, fixed in ROWS.items():
        sim.sim.instances[instance_id].fixed_rows = fixed
    return sim


def project_text(sim: RunningSimulator, instances: list[str], *, endpoint: str | None = None,
                 auth: str = "      type: token\n      token_file: token.txt\n") -> str:
    listed = "".join(f"      - id: {i}\n        name: {NAMES[i]}\n" for i in instances)
    return (f"  - project_id: {sim.sim.project_id}\n"
            "    region: cn-north-4\n"
            f"    endpoint: {endpoint or sim.base_url}\n"
            f"    iam_endpoint: {sim.base_url}\n"
            f"    auth:\n{auth}"
            f"    instances:\n{listed}")


def config_text(sim: RunningSimulator, instances: list[str] | None = None, *, interval: float = INTERVAL,
                timeout: float = INTERVAL, backoff_max: str | None = "1s", poll_extra: str = "",
                projects: str | None = None, **project: Any) -> str:
    poll = f"poll:\n  interval: {interval}s\n  timeout: {timeout}s\n  concurrency: 4\n"
    if backoff_max is not None:
        poll += f"  backoff_max: {backoff_max}\n"
    poll += poll_extra
    if projects is None:
        projects = project_text(sim, instances or [HEALTHY, FAULTY], **project)
    return poll + "projects:\n" + projects


def write_setup(tmp_path: Path, text: str) -> Path:
    (tmp_path / "token.txt").write_text(SIM_TOKEN + "\n")
    return write_config(tmp_path / "config.yaml", text)


@dataclass
class View:
    """One scrape, read the way the assertions need it."""

    samples: list[Any]

    def up(self, instance_id: str) -> float | None:
        return value(self.samples, "htap_up", instance_id=instance_id)

    def sessions(self, instance_id: str) -> float | None:
        return value(self.samples, "htap_sessions", instance_id=instance_id)

    def errors(self, instance_id: str) -> dict[str, float]:
        return by_label(self.samples, "htap_poll_errors_total", "reason", instance_id=instance_id)

    def session_series(self, instance_id: str) -> list[str]:
        return [s.name for s in self.samples if s.labels.get("instance_id") == instance_id
                and (s.name.startswith("htap_session") or s.name.startswith("htap_active_session"))]

    def has_instance(self, instance_id: str) -> bool:
        return any(s.labels.get("instance_id") == instance_id for s in self.samples)

    def get(self, name: str, **labels: str) -> float | None:
        return value(self.samples, name, **labels)


async def view(exporter: Exporter) -> View:
    return View(await exporter.samples())


def sync(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """A plain condition (on the simulator or the collected logs) for `wait_until`."""
    async def check() -> bool:
        return condition()
    return check


def times_of(sim: RunningSimulator, instance_id: str, since: float = 0.0) -> list[float]:
    return [t for t in sim.sim.observed.request_times.get(instance_id, []) if t >= since]


def count_of(sim: RunningSimulator, instance_id: str) -> int:
    return sim.sim.observed.requests.get(instance_id, 0)


async def healthy_values(exporter: Exporter, instance_id: str = HEALTHY) -> View:
    """The neighbour is up with exactly the sessions the simulator serves, and never failed."""
    current = await view(exporter)
    expected = ROWS[instance_id]
    assert current.up(instance_id) == 1, exporter.logs()
    assert current.sessions(instance_id) == len(expected)
    queries = sum(1 for r in expected if r["command"] == "Query")
    assert current.get("htap_sessions_by_command", instance_id=instance_id, command="Query") == queries
    assert current.get("htap_sessions_by_command", instance_id=instance_id, command="Sleep") == len(expected) - queries
    assert current.get("htap_session_max_duration_seconds", instance_id=instance_id, command="Sleep") == \
        max(r["duration"] for r in expected if r["command"] == "Sleep")
    assert current.errors(instance_id) == {reason: 0 for reason in REASONS}
    return current


async def all_up(exporter: Exporter, *instance_ids: str) -> bool:
    current = await view(exporter)
    return all(current.up(i) == 1 and current.sessions(i) == len(ROWS[i]) for i in instance_ids)


def assert_cadence(times: list[float], interval: float = INTERVAL, what: str = "healthy instance") -> None:
    """Requests keep coming at about the interval: no long hole, no lost ticks on average."""
    assert len(times) >= 4, f"{what}: only {len(times)} requests"
    gaps = [b - a for a, b in zip(times, times[1:])]
    mean = (times[-1] - times[0]) / len(gaps)
    assert max(gaps) < 2.5 * interval, f"{what}: a gap of {max(gaps):.2f}s at interval {interval}s: {gaps}"
    assert 0.7 * interval < mean < 1.4 * interval, f"{what}: mean gap {mean:.2f}s at interval {interval}s: {gaps}"


def failure_lines(exporter: Exporter, instance_id: str) -> list[str]:
    return [line for line in exporter.log_lines if f"instance_id={instance_id}" in line and "poll failed" in line]


def recovery_lines(exporter: Exporter, instance_id: str) -> list[str]:
    return [line for line in exporter.log_lines if f"instance_id={instance_id}" in line and "poll recovered" in line]


def assert_down(current: View, instance_id: str, reason: str, *, min_errors: int = 1) -> None:
    """Down, no session series left, and only this reason counted."""
    assert current.up(instance_id) == 0
    assert current.session_series(instance_id) == []
    errors = current.errors(instance_id)
    assert errors[reason] >= min_errors, errors
    assert all(count == 0 for other, count in errors.items() if other != reason), errors


# --- one test per fault ------------------------------------------------------------------------------


@dataclass
class Case:
    fault: dict[str, Any]
    reason: str
    log: tuple[str, ...] = ()  # fragments of the one failure log line
    poll_extra: str = ""
    min_gap: float = 0.0  # no two requests to the faulty instance closer than this (Retry-After)
    backoff_max: str | None = "1s"
    window: int = 4  # requests of the healthy neighbour to watch while the other one is faulty
    faulty_requests: int = 0  # ... and of the faulty one
    check: Any = field(default=None)  # extra check(sim, faulty_times, healthy_times, view)


def check_backoff(sim: RunningSimulator, faulty: list[float], healthy: list[float], current: View) -> None:
    # Back-off doubles from the interval: far fewer requests than the neighbour at the normal
    # cadence over the same window, and growing gaps (jitter is +-10 %).
    assert len(faulty) <= len(healthy) / 2, (faulty, healthy)
    gaps = [b - a for a, b in zip(faulty, faulty[1:])]
    assert len(gaps) >= 3, gaps
    assert gaps[0] > 0.8 * INTERVAL, gaps
    for before, after in zip(gaps, gaps[1:3]):
        assert after > 1.4 * before, gaps


MAX_PAGES = 5


def check_page_cap(sim: RunningSimulator, faulty: list[float], healthy: list[float], current: View) -> None:
    # Every failed poll read exactly max_pages pages, then gave up (the fault never ends a walk).
    # `faulty` was taken before the scrape (at most one poll in flight), the recount after it.
    polls = current.errors(FAULTY)["bad_response"]
    assert len(faulty) <= MAX_PAGES * (polls + 1), (polls, len(faulty))
    assert len(times_of(sim, FAULTY, faulty[0])) >= MAX_PAGES * polls, (polls, len(faulty))


CASES = {
    "status_500": Case({"kind": "status"}, "http",
                       ("status=500", "error_code=DBS.05000000", "error_msg='Internal server error.'"),
                       backoff_max="2s", window=8, faulty_requests=4, check=check_backoff),
    "throttle_retry_after": Case({"kind": "throttle", "retry_after": "2"}, "throttled",
                                 ("status=429", "error_code=APIG.0308", "error_msg='The throttling threshold"),
                                 min_gap=2.0),
    "delay_beyond_timeout": Case({"kind": "delay", "seconds": 3}, "timeout", ("no answer within 0.5s",)),
    "garbage_body": Case({"kind": "garbage"}, "bad_response", ("invalid JSON",)),
    "html_502": Case({"kind": "html"}, "http", ("status=502", "HTML error page")),
    "wrong_shape": Case({"kind": "wrong_shape"}, "bad_response", ("no process_list",)),
    "process_list_not_a_list": Case({"kind": "not_list"}, "bad_response", ("process_list is not a list",)),
    "too_many_rows": Case({"kind": "too_many_rows"}, "bad_response", ("101 rows, more than limit=100",)),
    "endless_pagination": Case({"kind": "endless"}, "bad_response", (f"did not end after {MAX_PAGES} pages",),
                               poll_extra=f"  max_pages: {MAX_PAGES}\n", check=check_page_cap),
    "dropped_connection": Case({"kind": "drop"}, "network", ()),
    "oversize_body": Case({"kind": "oversize", "size": 256 * 1024}, "bad_response", ("65536-byte cap",),
                          poll_extra="  max_body_bytes: 65536\n"),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_fault(name: str, sim: RunningSimulator, tmp_path: Path) -> None:
    case = CASES[name]
    config = write_setup(tmp_path, config_text(sim, poll_extra=case.poll_extra, backoff_max=case.backoff_max))
    async with Exporter(["--config.file", str(config)]) as exporter:
        await wait_until(lambda: all_up(exporter, HEALTHY, FAULTY), what="both instances up")
        before = await view(exporter)
        last_success = before.get("htap_last_poll_success_timestamp_seconds", instance_id=FAULTY)

        fault_set = time.time()
        sim.sim.faults[FAULTY] = Fault.from_json(case.fault)

        async def faulty_for_a_while() -> bool:
            faulty = times_of(sim, FAULTY, fault_set)
            current = await view(exporter)
            return (current.up(FAULTY) == 0 and current.errors(FAULTY)[case.reason] >= 2
                    and len(faulty) >= case.faulty_requests
                    and len(times_of(sim, HEALTHY, faulty[0] if faulty else time.time())) >= case.window)
        await wait_until(faulty_for_a_while, what=f"{name}: two failed polls, reason {case.reason}")

        first_fault = times_of(sim, FAULTY, fault_set)[0]
        faulty_times = times_of(sim, FAULTY, fault_set)
        healthy_times = times_of(sim, HEALTHY, first_fault)
        current = await view(exporter)
        assert_down(current, FAULTY, case.reason, min_errors=2)
        # No success since the fault (a poll answered before it may have been published after
        # `before` was taken: its time is still before the first faulty request).
        assert current.get("htap_last_poll_success_timestamp_seconds", instance_id=FAULTY) < first_fault
        await healthy_values(exporter)
        assert_cadence(healthy_times)
        if case.check is not None:
            case.check(sim, faulty_times, healthy_times, current)

        # One line for the change of state, not one per failed poll; it says who, why and the API's words.
        # (Written before the failure is published; read from the process's stderr a moment later.)
        await wait_until(sync(lambda: bool(failure_lines(exporter, FAULTY))), what=f"{name}: the failure's log line")
        lines = failure_lines(exporter, FAULTY)
        assert len(lines) == 1, "\n".join(lines)
        for fragment in (f"instance_name={NAMES[FAULTY]}", f"reason={case.reason}", *case.log):
            assert fragment in lines[0], lines[0]

        # Clearing the fault brings the instance back without a restart.
        cleared = time.time()
        del sim.sim.faults[FAULTY]
        await wait_until(lambda: all_up(exporter, HEALTHY, FAULTY), what=f"{name}: recovery")
        await wait_until(sync(lambda: bool(recovery_lines(exporter, FAULTY))), what=f"{name}: the recovery's log line")
        await healthy_values(exporter)
        recovered = await view(exporter)
        assert recovered.get("htap_last_poll_success_timestamp_seconds", instance_id=FAULTY) > last_success
        assert all(count == 0 for other, count in recovered.errors(FAULTY).items() if other != case.reason)
        assert len(failure_lines(exporter, FAULTY)) == 1
        assert len(recovery_lines(exporter, FAULTY)) == 1

        if case.min_gap:
            # Retry-After honoured: no request to the instance before it elapsed, up to and
            # including the first one after the fault was cleared.
            requested = times_of(sim, FAULTY, fault_set)
            until_recovery = [t for t in requested if t < cleared] + [t for t in requested if t >= cleared][:1]
            gaps = [b - a for a, b in zip(until_recovery, until_recovery[1:])]
            assert len(gaps) >= 2, gaps
            assert min(gaps) >= case.min_gap - 0.05, gaps
    assert "Traceback" not in exporter.logs(), exporter.logs()


async def test_fault_ignored_offset_still_ends_the_walk(sim: RunningSimulator, tmp_path: Path) -> None:
    many = rows(250, prefix="s")
    sim.sim.instances[FAULTY].fixed_rows = many
    config = write_setup(tmp_path, config_text(sim))
    async with Exporter(["--config.file", str(config)]) as exporter:
        async def all_sessions() -> bool:
            current = await view(exporter)
            return current.sessions(FAULTY) == 250 and current.up(HEALTHY) == 1
        await wait_until(all_sessions, what="250 sessions over three pages")

        fault_set = time.time()
        sim.sim.faults[FAULTY] = Fault(kind="ignore_offset")

        async def two_polls_under_fault() -> bool:
            # Every page is the first page again: the second adds no new session and ends the walk.
            current = await view(exporter)
            return (current.sessions(FAULTY) == 100 and len(times_of(sim, FAULTY, fault_set)) >= 6
                    and len(times_of(sim, HEALTHY, fault_set)) >= 5)
        await wait_until(two_polls_under_fault, what="polls that end with 100 sessions")
        current = await view(exporter)
        assert current.up(FAULTY) == 1 and current.sessions(FAULTY) == 100
        assert current.errors(FAULTY) == {reason: 0 for reason in REASONS}
        # Pages of one poll come back to back, polls an interval apart: two pages per poll, never more
        # (the first poll may have begun before the fault, the last may still be running).
        polls = split_polls(times_of(sim, FAULTY, fault_set), 0.4 * INTERVAL)
        assert len(polls) >= 3 and all(len(poll) <= 2 for poll in polls), polls
        assert all(len(poll) == 2 for poll in polls[1:-1]), polls
        await healthy_values(exporter)
        assert_cadence(times_of(sim, HEALTHY, fault_set))
        assert failure_lines(exporter, FAULTY) == []

        del sim.sim.faults[FAULTY]
        await wait_until(all_sessions, what="250 sessions again")
    assert "Traceback" not in exporter.logs(), exporter.logs()


async def test_fault_connection_refused(sim: RunningSimulator, tmp_path: Path) -> None:
    # A loopback port that is bound but not listening refuses connections, and nobody can take it.
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    projects = (project_text(sim, [HEALTHY])
                + project_text(sim, [FAULTY], endpoint=f"http://127.0.0.1:{port}"))
    config = write_setup(tmp_path, config_text(sim, projects=projects))
    late_runner: web.AppRunner | None = None
    try:
        async with Exporter(["--config.file", str(config)]) as exporter:
            started = time.time()

            async def refused_for_a_while() -> bool:
                current = await view(exporter)
                return (current.up(FAULTY) == 0 and current.errors(FAULTY)["network"] >= 2
                        and len(times_of(sim, HEALTHY, started)) >= 5)
            await wait_until(refused_for_a_while, what="two refused polls")
            current = await view(exporter)
            assert_down(current, FAULTY, "network", min_errors=2)
            assert current.get("htap_last_poll_success_timestamp_seconds", instance_id=FAULTY) is None
            await healthy_values(exporter)
            assert_cadence(times_of(sim, HEALTHY, started)[1:])
            assert count_of(sim, FAULTY) == 0
            lines = failure_lines(exporter, FAULTY)
            assert len(lines) == 1, "\n".join(lines)
            assert "reason=network" in lines[0] and f"instance_name={NAMES[FAULTY]}" in lines[0]

            # The API comes up on that very port: the instance recovers without a restart.
            late_runner = web.AppRunner(sim.sim.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
            await late_runner.setup()
            await web.SockSite(late_runner, closed).start()
            await wait_until(lambda: all_up(exporter, HEALTHY, FAULTY), what="recovery once the port listens")
            await wait_until(sync(lambda: bool(recovery_lines(exporter, FAULTY))), what="the recovery's log line")
            assert len(recovery_lines(exporter, FAULTY)) == 1
            assert len(failure_lines(exporter, FAULTY)) == 1
        assert "Traceback" not in exporter.logs(), exporter.logs()
    finally:
        if late_runner is not None:
            await late_runner.cleanup()
        closed.close()


# --- reload ---------------------------------------------------------------------------------------------


async def test_reload_swaps_valid_configs_and_keeps_the_old_one_on_errors(sim: RunningSimulator,
                                                                          tmp_path: Path) -> None:
    config = write_setup(tmp_path, config_text(sim, [HEALTHY, FAULTY]))
    async with Exporter(["--config.file", str(config)]) as exporter:
        await wait_until(lambda: all_up(exporter, HEALTHY, FAULTY), what="both instances up")
        assert exporter.process is not None

        async def reload_gauge() -> float | None:
            return (await view(exporter)).get("htap_config_last_reload_successful")
        assert await reload_gauge() == 1

        # SIGHUP with a valid config: SPARE added, FAULTY removed.
        write_config(config, config_text(sim, [HEALTHY, SPARE]))
        exporter.process.send_signal(signal.SIGHUP)

        async def swapped() -> bool:
            current = await view(exporter)
            return not current.has_instance(FAULTY) and current.up(SPARE) == 1 and current.sessions(SPARE) == 3
        await wait_until(swapped, what="SPARE polled and FAULTY gone after SIGHUP")
        assert await reload_gauge() == 1
        await wait_until(sync(lambda: any("configuration reloaded" in line for line in exporter.log_lines)),
                         what="the reload log line")
        removed_count = count_of(sim, FAULTY)
        seen = time.time()
        await wait_until(sync(lambda: len(times_of(sim, SPARE, seen)) >= 3), what="SPARE polled on")
        assert count_of(sim, FAULTY) == removed_count, "a removed instance is still polled"

        # An invalid config, by SIGHUP then by POST: logged, rejected, the old one keeps running.
        write_config(config, config_text(sim, [HEALTHY, SPARE]).replace("interval: 0.5s", "interval: soon"))
        exporter.process.send_signal(signal.SIGHUP)
        await wait_until(sync(lambda: any("reload failed" in line for line in exporter.log_lines)),
                         what="the failed reload log line")
        assert await reload_gauge() == 0
        failed = [line for line in exporter.log_lines if "reload failed" in line]
        assert len(failed) == 1 and "poll.interval" in failed[0] and "soon" in failed[0], failed
        status, body = await exporter.post("/-/reload")
        assert status == 500, body
        assert "poll.interval" in body and str(config) in body, body
        assert await reload_gauge() == 0
        invalid_since = time.time()
        await wait_until(sync(lambda: len(times_of(sim, SPARE, invalid_since)) >= 4
                              and len(times_of(sim, HEALTHY, invalid_since)) >= 4),
                         what="both instances still polled under the old config")
        assert_cadence(times_of(sim, HEALTHY, invalid_since), what="HEALTHY after a bad reload")
        await healthy_values(exporter, HEALTHY)
        await healthy_values(exporter, SPARE)
        assert not (await view(exporter)).has_instance(FAULTY)

        # Changed credentials take effect: a token file with a token the API rejects...
        (tmp_path / "wrong.txt").write_text("not-the-right-token-000000000000")
        write_config(config, config_text(sim, [HEALTHY, SPARE], auth="      type: token\n      token_file: wrong.txt\n"))
        status, body = await exporter.post("/-/reload")
        assert status == 200, body
        assert await reload_gauge() == 1

        async def rejected() -> bool:
            current = await view(exporter)
            return all(current.up(i) == 0 and current.errors(i)["auth"] >= 1 for i in (HEALTHY, SPARE))
        await wait_until(rejected, what="auth errors with the wrong token")
        current = await view(exporter)
        assert_down(current, HEALTHY, "auth")
        assert_down(current, SPARE, "auth")
        assert "not-the-right-token" not in "\n".join(exporter.log_lines)

        # ... then another file with a token the API accepts (rotated credentials), by SIGHUP.
        rotated = "sim-rotated-token-111111111111111"
        sim.sim.static_tokens.add(rotated)
        (tmp_path / "rotated.txt").write_text(rotated + "\n")
        write_config(config, config_text(sim, [HEALTHY, SPARE], auth="      type: token\n      token_file: rotated.txt\n"))
        exporter.process.send_signal(signal.SIGHUP)
        await wait_until(lambda: all_up(exporter, HEALTHY, SPARE), timeout=10, what="up again with the rotated token")
        assert await reload_gauge() == 1
        assert not (await view(exporter)).has_instance(FAULTY)

        # Rotated again, in place: the same file with new content is used from the next poll on,
        # so the old token can be revoked without a single rejected request.
        rotated_again = "sim-rotated-token-2222222222222222222222"
        sim.sim.static_tokens.add(rotated_again)
        (tmp_path / "rotated.txt").write_text(rotated_again + "\n")
        exporter.process.send_signal(signal.SIGHUP)
        await wait_until(sync(lambda: sum("configuration reloaded" in line for line in exporter.log_lines) == 4),
                         what="the fourth successful reload")
        rewritten = time.time()
        await wait_until(sync(lambda: len(times_of(sim, HEALTHY, rewritten)) >= 2), what="polls with the new file")
        sim.sim.static_tokens.discard(rotated)
        auth_errors = (await view(exporter)).errors(HEALTHY)["auth"]
        revoked = time.time()
        await wait_until(sync(lambda: len(times_of(sim, HEALTHY, revoked)) >= 3
                              and len(times_of(sim, SPARE, revoked)) >= 3), what="polls after the revocation")
        assert await all_up(exporter, HEALTHY, SPARE), exporter.logs()
        assert (await view(exporter)).errors(HEALTHY)["auth"] == auth_errors
    assert exporter.process.returncode == 0
    assert "Traceback" not in exporter.logs(), exporter.logs()


# --- graceful stop -------------------------------------------------------------------------------------


async def test_sigterm_exits_promptly_while_requests_hang(sim: RunningSimulator, tmp_path: Path) -> None:
    config = write_setup(tmp_path, config_text(sim, [FAULTY], interval=30, timeout=30, backoff_max=None))
    sim.sim.faults["*"] = Fault(kind="delay", seconds=60)
    exporter = await Exporter(["--config.file", str(config)]).start()
    try:
        await wait_until(sync(lambda: count_of(sim, FAULTY) >= 1), what="a request hanging on the API")
        # Still serving while the poll hangs; the instance is listed but has no result yet.
        current = await view(exporter)
        assert current.get("htap_exporter_build_info", version=__version__) == 1
        assert current.up(FAULTY) is None and current.session_series(FAULTY) == []
        assert current.get("htap_poll_duration_seconds", instance_id=FAULTY) is None
        assert exporter.process is not None and exporter.process.returncode is None
    finally:
        stopping = time.monotonic()
        code = await exporter.stop(signal.SIGTERM, timeout=15)
        elapsed = time.monotonic() - stopping
    assert code == 0, exporter.logs()
    assert elapsed < 5, f"SIGTERM took {elapsed:.1f}s"
    assert any("stopping" in line for line in exporter.log_lines)
    assert "Traceback" not in exporter.logs(), exporter.logs()
