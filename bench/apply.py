#!/usr/bin/env python3
"""Applying a big discovered fleet: how long the fleet's apply and a refresh that replaces every id
hold the event loop, and how that grows with the fleet (it must grow linearly).

    .venv/bin/python bench/apply.py --instances 5000,20000,100000 [--profile]

In one process, no network: discovery answers from memory (the real merge, shard, budget and
scheduler apply run), and the loops' first runs are far enough away not to start. For each size:
the seconds of the first apply, of a refresh that replaces every id, the longest time the loop was
held (a ticker measures it), and the ratio to the smallest size per instance.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import logging
import pstats
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from htap_exporter import gcsettings  # noqa: E402
from htap_exporter.clock import Clock  # noqa: E402
from htap_exporter.cloud.clients import ClientFactory  # noqa: E402
from htap_exporter.collectors.registry import CollectorSet, all_families  # noqa: E402
from htap_exporter.config import (Config, DiscoveryConfig, PollConfig, ProjectConfig, Secret,  # noqa: E402
                                  SecretSource, TokenAuth)
from htap_exporter.exposition.families import Layouts  # noqa: E402
from htap_exporter.runtime.state import layout_families  # noqa: E402
from htap_exporter.exposition.store import Store  # noqa: E402
from htap_exporter.fleet import fleet as fleet_module  # noqa: E402
from htap_exporter.fleet.discovery import DiscoveredInstance, Discovery  # noqa: E402
from htap_exporter.redact import Redactor  # noqa: E402
from htap_exporter.runtime.scheduler import Scheduler  # noqa: E402
from htap_exporter.simulator import instance_id_for  # noqa: E402


def found(index: int) -> DiscoveredInstance:
    return DiscoveredInstance(instance_id_for(index), f"found-{index}", "normal", False, "3.1.6", "3", f"t{index}")


CYCLES = False  # --cycles


class GcPauses:
    """The garbage collector's longest pause, by generation."""

    def __init__(self) -> None:
        self.longest: dict[int, float] = {}
        self._started = 0.0
        gc.callbacks.append(self.observe)

    def observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._started
            self.longest[info["generation"]] = max(pause, self.longest.get(info["generation"], 0.0))


async def measure(instances: int, profile: cProfile.Profile | None) -> tuple[float, float, float]:
    """(first apply s, replacing refresh s, longest loop stall s)"""
    answers = [Discovery(tuple(found(n) for n in range(instances)), instances, 1),
               Discovery(tuple(found(n) for n in range(instances, 2 * instances)), instances, 1)]

    async def discover(client: object, settings: object) -> Discovery:
        return answers[0]

    fleet_module.discover = discover  # type: ignore[assignment]
    clock = Clock()
    store = Store(Layouts.of(layout_families(all_families())))
    async with aiohttp.ClientSession() as session:
        clients = ClientFactory(session=session, clock=clock, redactor=Redactor(), observe=lambda *a: None)
        scheduler = Scheduler(store=store, clock=clock, clients=clients, rng=random.Random(1))
        collectors = CollectorSet(clock.time)

        async def on_fleet(effective: Config) -> None:
            await scheduler.apply(effective, collectors.enabled(effective))
            gcsettings.settle()  # as the exporter does

        fleet = fleet_module.Fleet(clients=clients, on_fleet=on_fleet, clock=clock, registry=CollectorRegistry())
        project = ProjectConfig(project_id="a" * 32, region="cn-north-4", endpoint="http://127.0.0.1:9",
                                iam_endpoint="http://127.0.0.1:9",
                                auth=TokenAuth(SecretSource(value=Secret("t" * 16))), instances=(),
                                discovery=DiscoveryConfig(enabled=True, refresh_interval=3600.0))
        config = Config(file="bench", projects=(project,), poll=PollConfig(interval=3600.0))
        stall = 0.0
        ticking = True

        async def ticker() -> None:
            nonlocal stall
            last = time.perf_counter()
            while ticking:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                stall = max(stall, now - last)
                last = now

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        if profile:
            profile.enable()
        started = time.perf_counter()
        await fleet.apply(config)
        first = time.perf_counter() - started
        answers.pop(0)
        if CYCLES:
            gc.collect()  # what the first apply left: only the refresh's garbage is counted below
        refresher = next(iter(fleet._refreshers.values()))
        started = time.perf_counter()
        async with fleet._lock:
            assert await fleet._refresh(refresher)
            await fleet._publish()
        replaced = time.perf_counter() - started
        if profile:
            profile.disable()
        if CYCLES:
            gc.set_debug(gc.DEBUG_SAVEALL)
            cyclic = gc.collect()
            gc.set_debug(0)
            from collections import Counter
            print("cyclic garbage after the refresh:", cyclic,
                  Counter(type(o).__name__ for o in gc.garbage).most_common(8))
            gc.garbage.clear()
        ticking = False
        await tick
        started = time.perf_counter()
        await fleet.stop()
        await scheduler.stop()
        return first, replaced, stall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", default="5000,20000")
    parser.add_argument("--profile", action="store_true", help="cProfile the applies, top functions by own time")
    parser.add_argument("--cycles", action="store_true",
                        help="after the refresh, count the objects only the cycle collector would free")
    args = parser.parse_args()
    global CYCLES
    CYCLES = args.cycles
    sizes = [int(n) for n in args.instances.split(",")]
    logging.basicConfig(level=logging.ERROR)  # the first loops' polls fail (no server): not news
    gcsettings.configure()  # as the exporter runs
    print("| discovered instances | first apply | refresh replacing every id | longest loop stall"
          " | longest gc pause | first apply per 1,000 |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        profile = cProfile.Profile() if args.profile else None
        pauses = GcPauses()
        first, replaced, stall = asyncio.run(measure(size, profile))
        gc.callbacks.remove(pauses.observe)
        longest = max(pauses.longest.values(), default=0)
        print(f"| {size:,} | {first:.2f} s | {replaced:.2f} s | {stall:.2f} s | {longest:.2f} s"
              f" | {1000 * first / size * 1000:.1f} ms |", flush=True)
        if profile:
            pstats.Stats(profile).sort_stats("tottime").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
