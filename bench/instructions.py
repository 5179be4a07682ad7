#!/usr/bin/env python3
"""What a collector costs the poll, counted in instructions: the same figure in every run.

    .venv/bin/python bench/instructions.py [--collectors top,all] [--instances 40] [--simulate branches]

The exporter's CPU time moves with the machine (10-15 % from one minute to the next on a shared
2-core machine, a few % even between two exporters measured in the same seconds), which hides a
cost of a few %. Here each exporter runs under valgrind's callgrind, which counts the instructions
it executes: an exporter of the session poll alone and one per --collectors entry (top: top
sessions as enabling them gives them; digest: with `sql: digest`; apis: replication, nodes and
query queue; all: every collector), all polling one simulator (bench.py's, static pages). Counting
starts once every instance is up and runs for --window seconds; each is divided by the API calls
of its window (every API's). Three runs of the session poll alone agreed to within 0.3 %.

Callgrind runs a program ~50 times slower, so the fleet is small (40 instances every 10 s by
default): the figures are per call, and a call's work does not depend on the fleet's size. What
instructions do not show: the processor's caches and its branch prediction. `--simulate caches`
or `--simulate branches` has callgrind simulate one of them (slower still) and adds a table of its
counts per call: at 1,000 instances top sessions cost about twice their share of instructions in
CPU time, and their mispredicted branches are the part of that found (docs/benchmarks.md). Needs
valgrind.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402

# bench.py's configurations, and top sessions with digests.
CONFIGS = {**bench.COLLECTORS, "digest": "collectors:\n  top_sessions: {enabled: true, sql: digest}\n"}
EVENTS = re.compile(r"^events: (.+)$", re.M)
TOTALS = re.compile(r"^totals: ([\d ]+)$", re.M)
# What callgrind simulates besides counting instructions, and what its event names mean.
SIMULATIONS = {"caches": "--cache-sim=yes", "branches": "--branch-sim=yes"}
EVENT_NAMES = {
    "Dr": "data reads", "Dw": "data writes", "I1mr": "L1 instruction misses", "D1mr": "L1 data read misses",
    "D1mw": "L1 data write misses", "ILmr": "last-level instruction misses", "DLmr": "last-level data read misses",
    "DLmw": "last-level data write misses", "Bc": "conditional branches", "Bcm": "conditional mispredicted",
    "Bi": "indirect branches", "Bim": "indirect mispredicted",
}


def counted(workdir: Path, base_url: str, instances: int, interval: float, window: float,
            all_collectors: list[str], tree: Path,
            simulate: str | None = None) -> dict[str, tuple[int, dict[str, int]]]:
    """Per collectors entry: (API calls, callgrind's counts by event: `Ir` the instructions, and
    those of the `simulate` entry of SIMULATIONS) over one window, all exporters at once."""
    exporters: dict[str, tuple[bench.Process, str, Path]] = {}
    try:
        for collectors in all_collectors:
            config = workdir / f"{collectors}.yaml"
            bench.write_config(config, base_url, instances, interval, None, collectors, CONFIGS)
            output = workdir / f"{collectors}.callgrind"
            options = [SIMULATIONS[simulate]] if simulate is not None else []
            process = bench.Process(["valgrind", "--tool=callgrind", "--instr-atstart=no", *options,
                                     f"--callgrind-out-file={output}", sys.executable, "-m", "htap_exporter",
                                     "--config.file", str(config), "--web.listen-address", "127.0.0.1:0"],
                                    r"listening on ([0-9A-Za-z.:\[\]]+)", cwd=tree)
            exporters[collectors] = (process, "", output)
        for collectors, (process, _, output) in exporters.items():  # started together: each takes a while
            exporters[collectors] = (process, "http://" + process.wait_ready(600).group(1), output)
        for _, url, _ in exporters.values():
            bench.wait_until(lambda url=url: bench.instances_up(url) >= instances, 600, "every instance up")
        time.sleep(2 * interval)  # past the first runs
        before = {}
        for collectors, (process, url, _) in exporters.items():
            before[collectors] = sum(bench.api_calls(url).values())
            subprocess.run(["callgrind_control", "--instr=on", str(process.pid)], check=True, capture_output=True)
        time.sleep(window)
        calls = {}
        for collectors, (process, url, _) in exporters.items():
            subprocess.run(["callgrind_control", "--instr=off", str(process.pid)], check=True, capture_output=True)
            calls[collectors] = sum(bench.api_calls(url).values()) - before[collectors]
    finally:
        for process, _, _ in exporters.values():
            process.stop(timeout=120)  # callgrind writes its counts as the process exits
    results = {}
    for collectors, (_, _, output) in exporters.items():
        text = output.read_text(encoding="utf-8", errors="replace")
        events, totals = EVENTS.search(text), TOTALS.search(text)
        if events is None or totals is None:
            raise SystemExit(f"instructions: no counts from callgrind for {collectors}")
        counts = dict(zip(events.group(1).split(), map(int, totals.group(1).split()), strict=True))
        results[collectors] = (calls[collectors], counts)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collectors", default="top", help="comma-separated: all, top, apis, digest (default top)")
    parser.add_argument("--instances", type=int, default=40, help="fleet size (default 40)")
    parser.add_argument("--interval", type=float, default=10.0, help="poll interval, s (default 10)")
    parser.add_argument("--window", type=float, default=60.0, help="counted seconds (default 60)")
    parser.add_argument("--simulate", choices=sorted(SIMULATIONS),
                        help="also simulate the caches or the branch predictor, and count their events")
    parser.add_argument("--exporter-tree", type=Path, default=bench.ROOT, help="run the exporter from this tree")
    args = parser.parse_args(argv)
    wanted = args.collectors.split(",")
    known = [name for name in CONFIGS if name != "sessions"]  # the reference runs anyway
    unknown = [name for name in wanted if name not in known]
    if unknown:
        parser.error(f"unknown --collectors {', '.join(unknown)} (known: {', '.join(known)})")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("instructions: valgrind is not installed (apt-get install valgrind)")
    sim = bench.Process([sys.executable, "-m", "htap_exporter.simulator", "--listen", "127.0.0.1:0", "--instances",
                         str(args.instances), "--sessions", "150", "--sessions-spread", "100", "--static",
                         "--delay", "0.02"], r"simulator listening on (\S+)")
    try:
        base_url = sim.wait_ready(120).group(1)
        with tempfile.TemporaryDirectory(prefix="htap-instructions-") as workdir:
            results = counted(Path(workdir), base_url, args.instances, args.interval, args.window,
                              ["sessions", *wanted], args.exporter_tree.resolve(), args.simulate)
    finally:
        sim.stop()
    reference_calls, reference_counts = results["sessions"]
    reference = {event: count / max(1, reference_calls) for event, count in reference_counts.items()}
    print(f"{args.instances} instances every {args.interval:g} s, {args.window:g} s counted\n")
    print("| collectors | API calls | instructions per call | vs the session poll alone |")
    print("|---|---|---|---|")
    for collectors, (calls, counts) in results.items():
        per_call = counts["Ir"] / max(1, calls)
        print(f"| {collectors} | {calls:,} | {per_call:,.0f} | {per_call / reference['Ir']:.3f}x |")
    simulated = [event for event in reference_counts if event != "Ir"]
    if simulated:
        print(f"\nSimulated {args.simulate}, per call (vs the session poll alone)\n")
        print("| collectors | " + " | ".join(EVENT_NAMES.get(event, event) for event in simulated) + " |")
        print("|---|" + "---|" * len(simulated))
        for collectors, (calls, counts) in results.items():
            cells = []
            for event in simulated:
                per_call = counts[event] / max(1, calls)
                ratio = f"{per_call / reference[event]:.3f}x" if reference[event] else "-"
                cells.append(f"{per_call:,.0f} ({ratio})")
            print(f"| {collectors} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
