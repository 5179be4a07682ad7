#!/usr/bin/env python3
"""The exporter at scale, measured against its baselines in one run.

    .venv/bin/python bench/bench.py --instances 100,1000,10000

For each fleet size: the simulator runs as its own process (pre-built pages, 150-250 sessions per
instance, so 2-3 pages each, answering after --latency), the real exporter process polls it, and
the bench measures, in this order:
  1. poll CPU: the exporter's CPU time per page fetched over a window with no scrapes, and pages
     fetched against the pages the schedule demands (every instance once per interval); the
     pauses between API requests reaching the simulator (a typical second's longest, and the
     longest);
  2. scrapes while polling: /metrics latency p50/p99 (one scraper at nice 19, one scrape a
     second), and the pauses between API requests again: what scraping adds to them is how long
     scrapes hold the exporter's event loop;
  3. RSS, then SIGTERM: seconds until the process has exited;
  4. baseline "bare loop": aiohttp + orjson GETting and parsing the same pages on the same schedule
     (every instance once per interval, spread evenly, the same concurrency), CPU per page; run
     once before the exporter starts and once after it stops, and the two added up;
  5. baseline generate_latest: prometheus_client rendering the same series (parsed from a scrape).
Ratios are read within one run: the machine may be shared, absolute numbers move with its load.
After the table, each row is judged against the targets of the work that made the exporter fast.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from htap_exporter.simulator import SIM_PROJECT_ID, SIM_TOKEN, instance_id_for  # noqa: E402

PAGE_LIMIT = 100
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    instances: int
    interval: float
    concurrency: int
    cpu_per_page_ms: float
    pages_fetched: int
    pages_demanded: int
    scrape_p50_ms: float
    scrape_p99_ms: float
    body_mb: float
    rss_mb: float
    sigterm_s: float
    bare_cpu_per_page_ms: float
    bare_pages: int
    generate_latest_ms: float
    load: str
    sim_busy: float  # the simulator's CPU share during the poll window (1.0: one core)
    bare_demanded: int
    # Pauses in the API requests without scrapes, and while scraping. Polling runs on the
    # exporter's one event loop, so anything that holds the loop (a scrape's join or copy) shows as
    # a pause in the requests reaching the simulator.
    quiet_pauses: Pauses
    scrape_pauses: Pauses

    @property
    def ratio(self) -> float:
        return self.cpu_per_page_ms / self.bare_cpu_per_page_ms if self.bare_cpu_per_page_ms else float("nan")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Process:
    """A child process whose stderr/stdout lines are collected by a thread."""

    def __init__(self, args: list[str], ready: str, cwd: Path = ROOT) -> None:
        self.popen = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      cwd=cwd)
        self.lines: list[str] = []
        self.match: re.Match[str] | None = None
        self._ready = threading.Event()
        self._pattern = re.compile(ready)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            if len(self.lines) < 2000:
                self.lines.append(line.rstrip("\n"))
            if self.match is None:
                self.match = self._pattern.search(line)
                if self.match:
                    self._ready.set()

    def wait_ready(self, timeout: float) -> re.Match[str]:
        if not self._ready.wait(timeout) or self.match is None:
            self.stop()
            raise SystemExit("bench: a child did not start:\n" + "\n".join(self.lines[-20:]))
        return self.match

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM; seconds until it exited."""
        started = time.monotonic()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return time.monotonic() - started


def get(url: str, timeout: float = 60.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as problem:
        return problem.code, b""


def sim_totals(base_url: str) -> dict:
    import json
    return json.loads(get(base_url + "/_sim/totals")[1])


def sim_requests(base_url: str) -> int:
    return sim_totals(base_url)["requests"]


@dataclass
class Pauses:
    """Gaps between consecutive API requests reaching the simulator, ms: the longest in a typical
    second (the median over the window's seconds of each second's longest gap: a pause that every
    scrape causes raises it, a rare collector run or scheduling hiccup does not) and the longest."""

    typical: float
    longest: float

    @classmethod
    def between(cls, base_url: str, since: float, until: float) -> Pauses:
        import json
        times = [t for t in json.loads(get(f"{base_url}/_sim/arrivals?since={since!r}")[1]) if t <= until]
        by_second: dict[int, float] = {}
        for earlier, later in itertools.pairwise(times):
            second = int(later - since)
            by_second[second] = max(by_second.get(second, 0.0), 1000 * (later - earlier))
        if not by_second:
            return cls(float("nan"), float("nan"))
        return cls(statistics.median(by_second.values()), max(by_second.values()))


def write_config(path: Path, base_url: str, instances: int, interval: float, concurrency: int | None) -> None:
    poll = f"poll:\n  interval: {interval:g}s\n  timeout: {min(10.0, interval):g}s\n"
    if concurrency is not None:
        poll += f"  concurrency: {concurrency}\n"
    listed = "".join(f"      - {instance_id_for(index)}\n" for index in range(instances))
    path.write_text(poll + "projects:\n"
                    f"  - project_id: {SIM_PROJECT_ID}\n    region: cn-north-4\n"
                    f"    endpoint: {base_url}\n    iam_endpoint: {base_url}\n"
                    f"    auth:\n      type: token\n      token: {SIM_TOKEN}\n"
                    f"    instances:\n{listed}", encoding="utf-8")


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.2)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


# --- the bare loop baseline ----------------------------------------------------------------------------


BARE_LOOP = r'''
import asyncio, os, sys, time
import aiohttp, orjson

base, project, token = sys.argv[1], sys.argv[2], sys.argv[3]
interval, concurrency, warmup, window = float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
ids = sys.stdin.read().split()

async def main():
    pages = 0
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def page(instance_id, offset):
            url = f"{base}/v3/{project}/instances/{instance_id}/htap/process?limit=100&offset={offset}"
            async with limit:
                async with session.get(url, headers={"X-Auth-Token": token}) as answer:
                    return orjson.loads(await answer.read())["process_list"]

        async def loop(index, instance_id):
            nonlocal pages
            next_due = start + interval * index / len(ids)
            while True:
                await asyncio.sleep(max(0.0, next_due - time.monotonic()))
                offset = 0
                while True:
                    rows = await page(instance_id, offset)
                    pages += 1
                    if len(rows) < 100:
                        break
                    offset += len(rows)
                next_due += interval

        start = time.monotonic()
        tasks = [asyncio.create_task(loop(index, instance_id)) for index, instance_id in enumerate(ids)]
        await asyncio.sleep(warmup)
        cpu, fetched = time.process_time(), pages
        await asyncio.sleep(window)
        print(f"bare {time.process_time() - cpu:.6f} {pages - fetched}", flush=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

asyncio.run(main())
'''


SCRAPER = r'''
import sys, time, urllib.request
url, window = sys.argv[1], float(sys.argv[2])
until = time.monotonic() + window
while time.monotonic() < until:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as answer:
        assert answer.status == 200, answer.status
        answer.read()
    elapsed = time.perf_counter() - started
    print(elapsed, flush=True)
    time.sleep(max(0.0, 1.0 - elapsed))
'''


def scrape(url: str, window: float) -> list[float]:
    """One scrape a second for `window` seconds, from a client at nice 19; each scrape's seconds."""
    answer = subprocess.run([sys.executable, "-c", SCRAPER, url, str(window)], capture_output=True, text=True,
                            timeout=window + 120, preexec_fn=lambda: os.nice(19))
    if answer.returncode != 0:
        raise SystemExit("bench: the scraper failed:\n" + answer.stderr)
    return [float(line) for line in answer.stdout.split()]


def bare_loop(base_url: str, instances: int, interval: float, concurrency: int, window: float) -> tuple[float, int]:
    ids = "\n".join(instance_id_for(index) for index in range(instances))
    answer = subprocess.run([sys.executable, "-c", BARE_LOOP, base_url, SIM_PROJECT_ID, SIM_TOKEN, str(interval),
                             str(concurrency), str(interval), str(window)], input=ids,
                            capture_output=True, text=True, timeout=interval + window + 120)
    match = re.search(r"bare ([0-9.]+) (\d+)", answer.stdout)
    if not match:
        raise SystemExit("bench: the bare loop failed:\n" + answer.stdout + answer.stderr)
    return float(match.group(1)), int(match.group(2))


def generate_latest_ms(body: bytes) -> float:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.registry import Collector

    families = list(text_string_to_metric_families(body.decode()))

    class Same(Collector):
        def collect(self):
            return iter(families)

    times = []
    for _ in range(3):
        started = time.perf_counter()
        generate_latest(Same())
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


# --- one fleet size ----------------------------------------------------------------------------------


def run(instances: int, interval: float, concurrency: int | None, window: float, scrape_window: float,
        latency: float, low: int, spread: int, workdir: Path, tree: Path) -> Result:
    sim = Process([sys.executable, "-m", "htap_exporter.simulator", "--listen", "127.0.0.1:0", "--instances",
                   str(instances), "--sessions", str(low), "--sessions-spread", str(spread), "--static",
                   "--delay", str(latency)], r"simulator listening on (\S+)")
    exporter = None
    try:
        base_url = sim.wait_ready(120).group(1)
        config = workdir / f"bench-{instances}.yaml"
        write_config(config, base_url, instances, interval, concurrency)
        effective = concurrency
        if effective is None:
            check = subprocess.run([sys.executable, "-m", "htap_exporter", "--config.file", str(config),
                                    "--config.check"], capture_output=True, text=True, cwd=tree)
            effective = int(re.search(r"concurrency=(\d+)", check.stdout).group(1))  # type: ignore[union-attr]
        # The bare loop runs before the exporter and again after it: the machine's pace drifts
        # (other tenants, clock speed), and the two runs around the exporter's window average it out.
        bare_before = bare_loop(base_url, instances, interval, effective, window)
        exporter = Process([sys.executable, "-m", "htap_exporter", "--config.file", str(config),
                            "--web.listen-address", "127.0.0.1:0"], r"listening on ([0-9A-Za-z.:\[\]]+)",
                           cwd=tree)
        metrics_url = "http://" + exporter.wait_ready(60).group(1)
        wait_until(lambda: get(metrics_url + "/-/ready")[0] == 200, 3 * interval + 60, "every first poll")
        time.sleep(min(interval, 10))  # past the start-up burst

        # 1. poll CPU, no scrapes
        demanded = sim_totals(base_url)["pages_per_round"] * window / interval
        quiet_since = time.time()
        cpu, fetched, sim_cpu = cpu_seconds(exporter.pid), sim_requests(base_url), cpu_seconds(sim.pid)
        time.sleep(window)
        cpu, fetched = cpu_seconds(exporter.pid) - cpu, sim_requests(base_url) - fetched
        sim_busy = (cpu_seconds(sim.pid) - sim_cpu) / window
        quiet_pauses = Pauses.between(base_url, quiet_since, time.time())

        # 2. scrapes while polling, by a client at the lowest CPU priority: on two cores it would
        # otherwise take CPU from the exporter's event loop and show as pauses that are not the
        # exporter's doing (Prometheus does not run on the exporter's machine).
        scrape_since = time.time()
        latencies = scrape(metrics_url + "/metrics", scrape_window)
        scrape_pauses = Pauses.between(base_url, scrape_since, time.time())
        status, body = get(metrics_url + "/metrics")
        assert status == 200, status
        size = len(body)
        load = "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())

        # 3. RSS, SIGTERM
        rss = rss_mb(exporter.pid)
        sigterm = exporter.stop()
        exporter = None

        # 4., 5. the baselines
        bare_after = bare_loop(base_url, instances, interval, effective, window)
        bare_cpu, bare_pages = bare_before[0] + bare_after[0], bare_before[1] + bare_after[1]
        rendering = generate_latest_ms(body)
        return Result(instances, interval, effective, 1000 * cpu / max(1, fetched), fetched, round(demanded),
                      1000 * statistics.median(latencies), 1000 * percentile(latencies, 0.99), size / 1e6, rss,
                      sigterm, 1000 * bare_cpu / max(1, bare_pages), bare_pages, rendering, load, sim_busy,
                      2 * round(demanded), quiet_pauses, scrape_pauses)
    finally:
        if exporter is not None:
            exporter.stop()
        sim.stop()


HEADER = ("| instances | interval | concurrency | CPU/page exporter | CPU/page bare loop | ratio"
          " | pages fetched / demanded | /metrics p50 / p99 (size) | generate_latest | p50 / generate_latest"
          " | pause in polling: a typical second's longest (longest), quiet / scraping"
          " | RSS | SIGTERM | load (1/5/15 min) |")


def row(result: Result) -> str:
    return (f"| {result.instances:,} | {result.interval:g} s | {result.concurrency} | {result.cpu_per_page_ms:.3f} ms"
            f" | {result.bare_cpu_per_page_ms:.3f} ms | {result.ratio:.2f}x"
            f" | {result.pages_fetched:,} / {result.pages_demanded:,}"
            f" ({result.pages_fetched / max(1, result.pages_demanded):.2f})"
            f" | {result.scrape_p50_ms:.1f} / {result.scrape_p99_ms:.1f} ms ({result.body_mb:.1f} MB)"
            f" | {result.generate_latest_ms:.0f} ms | {result.scrape_p50_ms / result.generate_latest_ms:.3f}x"
            f" | {result.quiet_pauses.typical:.1f} ({result.quiet_pauses.longest:.0f}) /"
            f" {result.scrape_pauses.typical:.1f} ({result.scrape_pauses.longest:.0f}) ms"
            f" | {result.rss_mb:.0f} MB | {result.sigterm_s:.2f} s | {result.load} |")


# The targets of the "fast at scale" work, judged on each row (ratios within the run).
PAUSE_MARGIN_MS = 5.0


def verdicts(result: Result) -> list[tuple[str, bool]]:
    rss_cap = 150 if result.instances <= 1000 else 600
    fetched = result.pages_fetched / max(1, result.pages_demanded)
    rendering = result.scrape_p50_ms / result.generate_latest_ms
    extra_pause = result.scrape_pauses.typical - result.quiet_pauses.typical
    return [
        (f"CPU/page {result.ratio:.2f}x <= 1.5x the bare loop", result.ratio <= 1.5),
        (f"pages {fetched:.2f} >= 0.95 of the schedule", fetched >= 0.95),
        (f"/metrics p50 {rendering:.3f}x <= 0.1x generate_latest", rendering <= 0.1),
        (f"scrapes add {extra_pause:+.1f} ms <= {PAUSE_MARGIN_MS:g} ms to a typical second's longest pause in polling",
         extra_pause <= PAUSE_MARGIN_MS),
        (f"RSS {result.rss_mb:.0f} MB <= {rss_cap} MB", result.rss_mb <= rss_cap),
        (f"SIGTERM {result.sigterm_s:.2f} s < 5 s", result.sigterm_s < 5),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", default="1000", help="comma-separated fleet sizes (default 1000)")
    parser.add_argument("--interval", type=float, help="poll interval, s (default 5 up to 1,000 instances, else 30)")
    parser.add_argument("--concurrency", type=int, help="poll.concurrency (default: the exporter's default)")
    parser.add_argument("--window", type=float, help="poll-CPU window, s (default 3 intervals)")
    parser.add_argument("--scrape-window", type=float, default=10.0, help="seconds of scraping (default 10)")
    parser.add_argument("--latency", type=float, default=0.02, help="simulator answer delay, s (default 0.02)")
    parser.add_argument("--exporter-tree", type=Path, default=ROOT,
                        help="run the exporter from this source tree (e.g. an older commit, for before/after)")
    parser.add_argument("--sessions", default="150-250", help="sessions per instance, LOW-HIGH (default 150-250)")
    args = parser.parse_args(argv)
    low, _, high = args.sessions.partition("-")
    low_n, high_n = int(low), int(high or low)
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="htap-bench-") as workdir:
        for instances in (int(n) for n in args.instances.split(",")):
            interval = args.interval or (5.0 if instances <= 1000 else 30.0)
            window = args.window or 3 * interval
            result = run(instances, interval, args.concurrency, window, args.scrape_window, args.latency,
                         low_n, high_n - low_n, Path(workdir), args.exporter_tree.resolve())
            print(row(result), flush=True)
            results.append(result)
    for result in results:
        print(f"{result.instances:,} instances: bare loop (two runs) fetched {result.bare_pages:,} / "
              f"{result.bare_demanded:,} pages; the simulator used {100 * result.sim_busy:.0f} % of a core")
    print("\nTargets:")
    missed = 0
    for result in results:
        judged = verdicts(result)
        missed += sum(not ok for _, ok in judged)
        print(f"- {result.instances:,} instances every {result.interval:g} s: "
              + "; ".join(f"{text}: {'met' if ok else 'MISSED'}" for text, ok in judged))
    print("every target met" if not missed else f"{missed} target(s) missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
