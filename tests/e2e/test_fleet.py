"""Growing with the fleet, through the real CLI against the simulator: discovery following
creations and deletions, its faults and filters, two projects, the API budget, and shards."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from htap_exporter.fleet.sharding import shard_of
from htap_exporter.simulator import SIM_TOKEN, Simulator, instance_id_for, start, taurus_id_for
from tests.fakes import RunningSimulator
from tests.e2e.harness import Exporter, by_label, value, wait_until, write_config

REASONS = ("auth", "throttled", "timeout", "network", "http", "bad_response")
FEW_SESSIONS = [{"id": str(n), "user": "app", "host": "10.0.0.1:1", "state": "OK", "database": "db",
                 "sql_statement": "", "duration": n, "command": "Sleep"} for n in range(3)]


def small_fleet(instances: int) -> Simulator:
    """A simulator whose instances answer one page each, so requests per poll are known."""
    sim = Simulator(instances=instances)
    for instance in sim.instances.values():
        instance.fixed_rows = FEW_SESSIONS
    return sim


def discovery_project(sim: RunningSimulator, *, token: str = SIM_TOKEN, refresh: str = "1s", extra: str = "",
                      rate: float = 0) -> str:
    return f"""
  - project_id: {sim.sim.project_id}
    region: cn-north-4
    endpoint: {sim.base_url}
    api_rate_limit: {rate}
    auth:
      type: token
      token: {token}
    discovery:
      enabled: true
      refresh_interval: {refresh}
{extra}"""


def config(tmp_path: Path, *projects: str, interval: str = "1s") -> Path:
    return write_config(tmp_path / "config.yaml",
                        f"poll:\n  interval: {interval}\n  timeout: 1s\nprojects:" + "".join(projects))


async def exported(exporter: Exporter) -> dict[str, dict[str, str]]:
    """instance_id -> labels of htap_instance_info, for every instance the exporter exports."""
    return {s.labels["instance_id"]: s.labels for s in await exporter.samples() if s.name == "htap_instance_info"}


async def control(sim: RunningSimulator, method: str, path: str, body: object = None) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, sim.base_url + "/_sim" + path, json=body) as answer:
            assert answer.status < 300, await answer.text()
            return await answer.json()


async def test_discovery_alone_exports_every_instance_and_follows_creations_and_deletions(
        tmp_path, simulator: RunningSimulator):
    pid = simulator.sim.project_id
    async with Exporter(["--config.file", str(config(tmp_path, discovery_project(simulator)))]) as exporter:
        everything = set(simulator.sim.instances)

        async def exporting(ids: set[str]) -> bool:
            return set(await exported(exporter)) == ids

        await wait_until(lambda: exporting(everything), what="every simulated instance")
        for instance_id in everything:
            await wait_until(lambda i=instance_id: _up(exporter, i), what=f"a successful poll of {instance_id}")
        info = (await exported(exporter))[instance_id_for(0)]
        assert info == {"instance_id": instance_id_for(0), "instance_name": "htap-1", "project_id": pid,
                        "region": "cn-north-4", "engine_version": "3.1.6", "node_count": "3", "status": "normal"}

        created = await control(simulator, "POST", "/instances", {"name": "newcomer", "sessions": 7})
        await wait_until(lambda: exporting(everything | {created["id"]}), what="the created instance")
        await wait_until(lambda: _up(exporter, created["id"]), what="the created instance's first poll")

        await control(simulator, "DELETE", f"/instances/{instance_id_for(0)}")
        await wait_until(lambda: exporting(everything - {instance_id_for(0)} | {created["id"]}),
                         what="the deleted instance to vanish")
        samples = await exporter.samples()
        assert not [s for s in samples if s.labels.get("instance_id") == instance_id_for(0)]  # all its series
        assert value(samples, "htap_discovered_instances", project_id=pid) == 3
        assert abs(value(samples, "htap_discovery_last_success_timestamp_seconds", project_id=pid) - time.time()) < 30
        assert by_label(samples, "htap_discovery_errors_total", "reason", project_id=pid) == dict.fromkeys(REASONS, 0)
        assert value(samples, "htap_api_requests_total", api="list_instances", code="200") >= 3
        assert value(samples, "htap_api_requests_total", api="list_htap_instances", code="200") >= 3


async def _up(exporter: Exporter, instance_id: str) -> bool:
    return value(await exporter.samples(), "htap_up", instance_id=instance_id) == 1


async def test_a_failing_list_call_keeps_the_set_and_counts_the_error(tmp_path, simulator: RunningSimulator):
    pid = simulator.sim.project_id
    async with Exporter(["--config.file", str(config(tmp_path, discovery_project(simulator)))]) as exporter:
        await wait_until(lambda: _count(exporter, 3), what="three instances")
        await control(simulator, "PUT", "/faults/list_instances", {"kind": "status"})

        async def errors_counted(at_least: int) -> bool:
            return (value(await exporter.samples(), "htap_discovery_errors_total", project_id=pid,
                          reason="http") or 0) >= at_least
        # A refresh that had its list before the fault may be published after it: the set and the
        # success time are taken once a refresh has failed.
        await wait_until(lambda: errors_counted(1), what="a failed refresh")
        before = await exporter.samples()
        simulator.sim.delete_instance(instance_id_for(2))  # unseen while the list call fails
        failed = value(before, "htap_discovery_errors_total", project_id=pid, reason="http")
        await wait_until(lambda: errors_counted(failed + 1), what="a failed refresh after the deletion")
        samples = await exporter.samples()
        assert {s.labels["instance_id"] for s in samples if s.name == "htap_instance_info"} == \
            {instance_id_for(n) for n in range(3)}
        assert value(samples, "htap_discovery_last_success_timestamp_seconds", project_id=pid) == \
            value(before, "htap_discovery_last_success_timestamp_seconds", project_id=pid)
        assert value(samples, "htap_discovered_instances", project_id=pid) == 3
        assert any("discovery failed" in line and "reason=http" in line for line in exporter.log_lines)

        await control(simulator, "DELETE", "/faults/list_instances")
        await wait_until(lambda: _count(exporter, 2), what="the deletion seen once listing works")


async def _count(exporter: Exporter, count: int) -> bool:
    return len(await exported(exporter)) == count


async def test_filters_include_exclude_frozen_and_statuses(tmp_path, simulator: RunningSimulator):
    sim = simulator.sim
    frozen = sim.create_instance("orders-frozen", frozen=True)
    creating = sim.create_instance("orders-new", status="creating")
    sim.create_instance("orders-test")
    main = sim.create_instance("orders-main")
    extra = "      include: 'orders-.*'\n      exclude: '.*-test'\n"
    async with Exporter(["--config.file", str(config(tmp_path, discovery_project(simulator, extra=extra)))]) as exporter:
        await wait_until(lambda: _count(exporter, 1), what="the one instance the filters keep")
        assert set(await exported(exporter)) == {main.id}
        # Thawed and created: both show up at the next refresh, with their status on the info series.
        await control(simulator, "PATCH", f"/instances/{frozen.id}", {"frozen": False})
        await control(simulator, "PATCH", f"/instances/{creating.id}", {"status": "normal"})
        await wait_until(lambda: _count(exporter, 3), what="the thawed and the created instance")
        assert set(await exported(exporter)) == {main.id, frozen.id, creating.id}


async def test_a_taurus_instance_deleted_between_the_steps_is_skipped_not_an_error(
        tmp_path, simulator: RunningSimulator):
    pid = simulator.sim.project_id
    async with Exporter(["--config.file", str(config(tmp_path, discovery_project(simulator)))]) as exporter:
        await wait_until(lambda: _count(exporter, 3), what="three instances")
        # Listed by step 1, "not found" in step 2: as if deleted in between.
        await control(simulator, "PUT", f"/faults/{taurus_id_for(0)}",
                      {"kind": "status", "status": 400, "error_code": "DBS.200022", "error_msg": "Instance not found."})
        await wait_until(lambda: _count(exporter, 1), what="its two HTAP instances to vanish")
        samples = await exporter.samples()
        assert by_label(samples, "htap_discovery_errors_total", "reason", project_id=pid) == dict.fromkeys(REASONS, 0)
        assert value(samples, "htap_discovered_instances", project_id=pid) == 1


async def test_two_projects_with_their_own_credentials_and_a_listed_instance_polled_once(
        tmp_path, simulator: RunningSimulator):
    other = Simulator(project_id="fedcba9876543210fedcba9876543210", instances=2, seed=7, first_index=100)
    other.static_tokens = {"second-project-token-0001"}
    other_runner, other_url = await start(other)
    try:
        second = RunningSimulator(other, other_url)
        # The first project also lists one of its instances under a name of its own: listed wins.
        listed = f"""
  - project_id: {simulator.sim.project_id}
    region: cn-north-4
    endpoint: {simulator.base_url}
    auth: {{type: token, token: {SIM_TOKEN}}}
    instances:
      - id: {instance_id_for(0)}
        name: orders-listed
"""
        path = config(tmp_path, listed, discovery_project(simulator),
                      discovery_project(second, token="second-project-token-0001"))
        async with Exporter(["--config.file", str(path)]) as exporter:
            await wait_until(lambda: _count(exporter, 5), what="3 + 2 instances")
            infos = await exported(exporter)
            for instance_id in list(simulator.sim.instances):
                await wait_until(lambda i=instance_id: _up(exporter, i), what="polls in the first project")
            for instance_id in list(other.instances):
                await wait_until(lambda i=instance_id: _up(exporter, i), what="polls in the second project")
            assert {i for i, labels in infos.items() if labels["project_id"] == other.project_id} == set(other.instances)
            assert infos[instance_id_for(0)]["instance_name"] == "orders-listed"
            assert infos[instance_id_for(0)]["status"] == "normal"  # discovered facts on the listed instance
            # Polled once: the listed-and-discovered instance is asked no more often than its siblings.
            counts = simulator.sim.observed.requests
            start_counts = dict(counts)
            await asyncio.sleep(3)
            grew = {i: counts[i] - start_counts.get(i, 0) for i in simulator.sim.instances}
            assert grew[instance_id_for(0)] <= max(grew[instance_id_for(1)], grew[instance_id_for(2)]) + 1, grew
        # Each project used its own credentials: neither simulator saw a rejected request.
        assert simulator.sim.observed.auth_failures == 0 and other.observed.auth_failures == 0
    finally:
        await other_runner.cleanup()


@pytest.mark.slow
async def test_the_rate_cap_holds_under_a_large_fleet_and_stretches_evenly(tmp_path):
    sim = small_fleet(160)
    runner, base_url = await start(sim)
    rate = 20.0
    try:
        running = RunningSimulator(sim, base_url)
        path = config(tmp_path, discovery_project(running, refresh="20s", rate=rate), interval="1s")
        async with Exporter(["--config.file", str(path)]) as exporter:
            await wait_until(lambda: _count(exporter, 160), timeout=30, what="the whole fleet listed")
            started, started_monotonic = time.time(), time.monotonic()
            samples = await exporter.samples()
            # 160 one-page polls per round; polls get 90 % of 20/s minus discovery's 81 requests / 20 s.
            expected = 160 / (0.9 * rate - 81 / 20)
            effective = value(samples, "htap_poll_effective_interval_seconds", project_id=sim.project_id)
            assert effective == pytest.approx(expected, rel=0.01)
            async def two_rounds() -> bool:  # every instance polled twice since `started`
                return all(sum(1 for t in sim.observed.request_times.get(i, []) if t >= started) >= 2
                           for i in sim.instances)
            await wait_until(two_rounds, timeout=3 * expected + 10, what="two polls of every instance")
            ended, ended_monotonic = time.time(), time.monotonic()
            samples = await exporter.samples()
        # api_request_times are monotonic (request_times are unix times)
        times = sorted(t for t in sim.observed.api_request_times if started_monotonic <= t <= ended_monotonic)
        span = ended_monotonic - started_monotonic
        # Never more than the bucket allows: rate per second plus a burst of one second's worth (the
        # exporter releases at most 2 x rate in any second; 2 more for arrival jitter at the simulator).
        worst = max(sum(1 for u in times[i:i + 100] if u < t + 1.0) for i, t in enumerate(times))
        assert worst <= 2 * rate + 2, worst
        worst_5s = max(sum(1 for u in times[i:i + 300] if u < t + 5.0) for i, t in enumerate(times))
        assert worst_5s <= 5 * rate + rate + 2, worst_5s
        average = len(times) / span
        assert average <= rate * 1.05, average
        # Every instance was polled about every `expected` seconds, none starved at the tail.
        polled = {i: sum(1 for t in sim.observed.request_times.get(i, []) if started <= t <= ended)
                  for i in sim.instances}
        assert min(polled.values()) >= 2 and max(polled.values()) <= 3, sorted(polled.values())
        assert all(value(samples, "htap_up", instance_id=i) == 1 for i in sim.instances)
        assert sum(value(samples, "htap_poll_errors_total", instance_id=i, reason="timeout")
                   for i in sim.instances) == 0
        print(f"rate cap {rate}/s: observed average {average:.2f}/s, worst 1 s window {worst}, worst 5 s {worst_5s},"
              f" effective interval {effective:.2f}s, polls per instance {min(polled.values())}-{max(polled.values())}")
    finally:
        await runner.cleanup()


async def shard_exports(sim: RunningSimulator, tmp_path: Path, count: int) -> list[set[str]]:
    """Run `count` exporters as shards 0..count-1 of one config; each one's exported instance ids."""
    path = config(tmp_path, discovery_project(sim, refresh="30s"), interval="2s")
    exporters = [Exporter(["--config.file", str(path), "--shard.index", str(k), "--shard.count", str(count)])
                 for k in range(count)]
    try:
        await asyncio.gather(*(e.start() for e in exporters))
        for exporter in exporters:
            await wait_until(lambda e=exporter: _ready(e), timeout=30, what="every shard ready")
        return [set(await exported(e)) for e in exporters]
    finally:
        await asyncio.gather(*(e.stop() for e in exporters))


async def _ready(exporter: Exporter) -> bool:
    status, _ = await exporter.get("/-/ready")
    return status == 200


@pytest.mark.slow
async def test_shards_export_each_instance_exactly_once_and_a_resize_moves_a_quarter(tmp_path):
    sim = small_fleet(80)
    runner, base_url = await start(sim)
    try:
        running = RunningSimulator(sim, base_url)
        fleet = set(sim.instances)
        assignments: dict[int, dict[str, int]] = {}
        for count in (1, 2, 3, 4):
            shares = await shard_exports(running, tmp_path, count)
            assert sum(len(share) for share in shares) == len(fleet)  # nobody exported twice
            assert set().union(*shares) == fleet  # nobody missed
            assignments[count] = {i: k for k, share in enumerate(shares) for i in share}
            assert assignments[count] == {i: shard_of(i, count) for i in fleet}
            print(f"{count} shard(s): {sorted(len(s) for s in shares)} instances each")
        moved = {i for i in fleet if assignments[3][i] != assignments[4][i]}
        # Growing 3 -> 4 moves only what the new shard takes (a quarter, give or take the sample).
        assert all(assignments[4][i] == 3 for i in moved)
        assert 0.1 <= len(moved) / len(fleet) <= 0.4, len(moved)
        print(f"3 -> 4 shards moved {len(moved)} of {len(fleet)} instances")
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("flags,message", [
    (["--shard.index", "4", "--shard.count", "4"],
     "htap-exporter: --shard.index/--shard.count: shard index must be between 0 and 3, got 4"),
    (["--shard.count", "0"],
     "htap-exporter: --shard.index/--shard.count: shard count must be between 1 and 1000, got 0"),
])
def test_bad_shard_flags_exit_1_with_one_line(flags, message):
    result = subprocess.run([sys.executable, "-m", "htap_exporter", "--demo", *flags], capture_output=True, text=True,
                            timeout=30)
    assert (result.returncode, result.stderr.strip()) == (1, message)


@pytest.mark.slow
async def test_prometheus_scraping_every_shard_sees_each_instance_once(tmp_path):
    """Three shards, one Prometheus scraping all of them, as the sharded setup of docs/configuration.md does."""
    from tests.e2e.prometheus import PrometheusServer, scrape_config

    sim = small_fleet(30)
    runner, base_url = await start(sim)
    path = config(tmp_path, discovery_project(RunningSimulator(sim, base_url), refresh="30s"), interval="2s")
    shards = [Exporter(["--config.file", str(path), "--shard.index", str(k), "--shard.count", "3"]) for k in range(3)]
    try:
        await asyncio.gather(*(shard.start() for shard in shards))
        async with PrometheusServer(tmp_path, scrape_config([shard.url for shard in shards])) as server:
            async def all_up() -> bool:
                return len(await server.result("htap_up == 1")) == 30

            await wait_until(all_up, timeout=60, what="Prometheus to see all 30 instances up")
            assert [r["value"][1] for r in await server.result('count(up{job="htap-exporter"} == 1)')] == ["3"]
            per_instance = await server.result("count by (instance_id) (htap_instance_info)")
            assert {r["metric"]["instance_id"] for r in per_instance} == set(sim.instances)
            assert {r["value"][1] for r in per_instance} == {"1"}  # each from exactly one replica
            # Every replica exports its own share, as the hash says.
            for r in await server.result("htap_instance_info"):
                owner = next(k for k, shard in enumerate(shards) if shard.url.endswith(r["metric"]["instance"]))
                assert shard_of(r["metric"]["instance_id"], 3) == owner
    finally:
        await asyncio.gather(*(shard.stop() for shard in shards))
        await runner.cleanup()


class HealthProbe:
    """GET /-/healthy every 0.1 s from a thread of its own (the test's event loop serves the
    simulator), each answer's seconds kept; a probe that fails counts as 60 s."""

    def __init__(self, url: str) -> None:
        self.url = url + "/-/healthy"
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=60) as answer:
                    ok = answer.status == 200
            except OSError:
                ok = False
            self.seconds.append(time.perf_counter() - started if ok else 60.0)
            self._stop.wait(0.1)

    def __enter__(self) -> "HealthProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def p99(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[int(0.99 * (len(ordered) - 1))]


def grouped(sim: Simulator, per_taurus: int) -> Simulator:
    """The simulator's HTAP instances regrouped, `per_taurus` under each TaurusDB instance: a big
    fleet discovered in fewer requests (step 2 is a request per TaurusDB instance)."""
    instances = list(sim.instances.values())
    sim.taurus = {taurus_id: sim.taurus[taurus_id] for taurus_id in
                  dict.fromkeys(instances[start].taurus_id for start in range(0, len(instances), per_taurus))}
    sim.children = {}
    for start_index in range(0, len(instances), per_taurus):
        taurus_id = instances[start_index].taurus_id
        for instance in instances[start_index:start_index + per_taurus]:
            instance.taurus_id = taurus_id
            sim.children.setdefault(taurus_id, {})[instance.id] = instance
    return sim


@pytest.mark.slow
@pytest.mark.parametrize("fleet, per_taurus, interval", [
    pytest.param(20_000, 2, "60s", id="20000"),
    # 100 HTAP instances to a TaurusDB instance: discovery in 1,000 step-2 requests, not 50,000.
    pytest.param(100_000, 100, "30m", id="100000"),
])
async def test_a_big_discovered_fleet_and_a_refresh_replacing_every_id_keep_the_process_responsive(
        tmp_path, fleet, per_taurus, interval):
    """Applying a big discovered fleet, and again when every id changes, never holds the event
    loop long: /-/healthy answers within 1 s (p99) throughout, and SIGTERM ends it within 5 s."""
    sim = grouped(small_fleet(fleet), per_taurus)
    runner, base_url = await start(sim)
    try:
        path = config(tmp_path, discovery_project(RunningSimulator(sim, base_url), refresh="15s"), interval=interval)
        exporter = await Exporter(["--config.file", str(path)]).start()
        try:
            with HealthProbe(exporter.url) as probe:
                async def discovered(removed: int, since: int = 0) -> bool:
                    """Discovery has added `fleet` instances and removed `removed` since log line
                    `since`: in one refresh, or in two when the ids changed while one was under way
                    (its later requests saw the new ids, its earlier ones the old)."""
                    changes = [line for line in exporter.log_lines[since:] if "discovered instances changed" in line]
                    return (sum(int(re.search(r"added=(\d+) ", line).group(1)) for line in changes) == fleet
                            and sum(int(re.search(r"removed=(\d+) ", line).group(1)) for line in changes) == removed
                            and f"instances={fleet} " in changes[-1])

                async def exported_ids(first: int) -> bool:
                    status, text = await exporter.get("/metrics?name[]=htap_instance_info")
                    assert status == 200
                    ids = set(re.findall(r'instance_id="([^"]+)"', text))
                    return ids == {instance_id_for(first + index) for index in range(fleet)}

                started = time.monotonic()
                await wait_until(lambda: discovered(0), timeout=600, what="the first discovery")
                await wait_until(lambda: exported_ids(0), timeout=120, what="every instance exported")
                first = time.monotonic() - started
                # Every id replaced, under the same TaurusDB instances: the next refresh stops
                # every loop and starts as many new ones (or the next two do).
                since = len(exporter.log_lines)
                renamed = {}
                for index, instance in enumerate(list(sim.instances.values())):
                    instance.id = instance_id_for(fleet + index)
                    renamed[instance.id] = instance
                sim.instances = renamed
                sim.children = {taurus_id: {child.id: child for child in children.values()}
                                for taurus_id, children in sim.children.items()}
                started = time.monotonic()
                await wait_until(lambda: discovered(fleet, since), timeout=600, what="the replacing refresh")
                await wait_until(lambda: exported_ids(fleet), timeout=120, what="the new ids exported")
                replaced = time.monotonic() - started
            started = time.monotonic()
            assert await exporter.stop() == 0
            stopped = time.monotonic() - started
        finally:
            await exporter.stop()
    finally:
        await runner.cleanup()
    print(f"\n{fleet:,} discovered ({first:.0f} s to all exported), every id replaced ({replaced:.0f} s):"
          f" /-/healthy p99 {probe.p99():.3f} s, longest {max(probe.seconds):.3f} s over {len(probe.seconds)}"
          f" probes; SIGTERM {stopped:.2f} s")
    assert probe.p99() < 1.0, sorted(probe.seconds)[-20:]
    assert stopped < 5.0


@pytest.mark.slow
async def test_sigterm_during_the_first_discovery_of_a_big_fleet_stops_within_5_s(tmp_path):
    sim = small_fleet(20_000)  # its discovery takes 10,100 requests, four at a time
    runner, base_url = await start(sim)
    try:
        path = config(tmp_path, discovery_project(RunningSimulator(sim, base_url), refresh="60s"), interval="60s")
        exporter = await Exporter(["--config.file", str(path)]).start()
        try:
            await wait_until(lambda: _asked_for_htap(sim), timeout=30, what="discovery under way")
            started = time.monotonic()
            assert await exporter.stop() == 0
            stopped = time.monotonic() - started
        finally:
            await exporter.stop()
    finally:
        await runner.cleanup()
    assert not any("msg=polling" in line for line in exporter.log_lines), exporter.logs()[-2000:]
    assert stopped < 5.0


async def _asked_for_htap(sim: Simulator) -> bool:
    return sim.observed.discovery_requests.get("list_htap", 0) > 20
