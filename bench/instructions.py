#!/usr/bin/env python3
"""What a collector costs the poll, counted in instructions: the same figure in every run.

    .venv/bin/python bench/instructions.py [--collectors top,all] [--instances 40] [--simulate branches] [--bare]

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
CPU time, and their mispredicted branches are the part of that found (docs/benchmarks.md).

`--bare` counts bench.py's baseline too (the bare aiohttp + orjson loop, per page) in the same
window, and lists the functions where the session poll's instructions exceed it: what is the
exporter's own. Needs valgrind (callgrind_annotate for `--bare`).
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

# bench.py's configurations (top sessions with digests among them).
CONFIGS = bench.COLLECTORS
FUNCTIONS = 15  # functions listed with --bare
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


BARE = "bare loop"  # the baseline's key among the results
# A line of callgrind_annotate: instructions, share, then file:function and the object in brackets.
ANNOTATED = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*?)(?: \[(.*)\])?$")


def callgrind(output: Path, simulate: str | None) -> list[str]:
    options = [SIMULATIONS[simulate]] if simulate is not None else []
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", *options, f"--callgrind-out-file={output}"]


def instrument(process: subprocess.Popen[str] | bench.Process, on: bool) -> None:
    subprocess.run(["callgrind_control", f"--instr={'on' if on else 'off'}", str(process.pid)], check=True,
                   capture_output=True)


def counted(workdir: Path, base_url: str, instances: int, interval: float, window: float,
            all_collectors: list[str], tree: Path, simulate: str | None = None,
            bare: bool = False) -> dict[str, tuple[int, Path]]:
    """Per collectors entry: (API calls, callgrind's output file) over one window, all exporters at
    once; with `bare`, also bench.py's bare loop under callgrind (its pages, its output) as BARE,
    whose own window is then the one counted."""
    exporters: dict[str, tuple[bench.Process, str, Path]] = {}
    baseline: bench.BareLoop | None = None
    pages = 0
    try:
        for collectors in all_collectors:
            config = workdir / f"{collectors}.yaml"
            bench.write_config(config, base_url, instances, interval, None, collectors, CONFIGS)
            output = workdir / f"{collectors}.callgrind"
            process = bench.Process([*callgrind(output, simulate), sys.executable, "-m", "htap_exporter",
                                     "--config.file", str(config), "--web.listen-address", "127.0.0.1:0"],
                                    r"listening on ([0-9A-Za-z.:\[\]]+)", cwd=tree)
            exporters[collectors] = (process, "", output)
        for collectors, (process, _, output) in exporters.items():  # started together: each takes a while
            exporters[collectors] = (process, "http://" + process.wait_ready(600).group(1), output)
        for _, url, _ in exporters.values():
            bench.wait_until(lambda url=url: bench.instances_up(url) >= instances, 600, "every instance up")
        if bare:
            # The bare loop measures a window of its own once its loops are spread over two intervals,
            # with the exporters' requests in flight: the exporters are counted in the same window.
            concurrency = bench.configured_concurrency(workdir / f"{all_collectors[0]}.yaml", tree)
            baseline = bench.BareLoop(base_url, instances, interval, concurrency, window, warmup=2 * interval,
                                      prefix=callgrind(workdir / "bare.callgrind", simulate))
            baseline.wait_for_window()
        else:
            time.sleep(2 * interval)  # past the first runs
        before = {}
        for collectors, (process, url, _) in exporters.items():
            before[collectors] = sum(bench.api_calls(url).values())
            instrument(process, True)
        if baseline is not None:
            instrument(baseline.process, True)
            _, pages = baseline.measured()
            instrument(baseline.process, False)
        else:
            time.sleep(window)
        calls = {}
        for collectors, (process, url, _) in exporters.items():
            instrument(process, False)
            calls[collectors] = sum(bench.api_calls(url).values()) - before[collectors]
    finally:
        for process, _, _ in exporters.values():
            process.stop(timeout=120)  # callgrind writes its counts as the process exits
        if baseline is not None:
            baseline.process.wait(timeout=120)
    results = {collectors: (calls[collectors], output) for collectors, (_, _, output) in exporters.items()}
    if baseline is not None:
        results[BARE] = (pages, workdir / "bare.callgrind")
    return results


def totals(output: Path) -> dict[str, int]:
    """callgrind's counts in `output`, by event (`Ir`: instructions)."""
    text = output.read_text(encoding="utf-8", errors="replace")
    events, found = EVENTS.search(text), TOTALS.search(text)
    if events is None or found is None:
        raise SystemExit(f"instructions: no counts from callgrind in {output.name}")
    return dict(zip(events.group(1).split(), map(int, found.group(1).split()), strict=True))


def by_function(output: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Instructions by function (own cost, `file:function`) and by the program or library that
    holds it, as callgrind_annotate lists them; files and libraries without their directories."""
    listing = subprocess.run(["callgrind_annotate", "--threshold=100", str(output)], capture_output=True,
                             text=True, check=True).stdout
    functions: dict[str, int] = {}
    objects: dict[str, int] = {}
    for line in listing.splitlines():
        found = ANNOTATED.match(line)
        if found is None or "PROGRAM TOTALS" in found.group(2):
            continue
        count = int(found.group(1).replace(",", ""))
        name = found.group(2).rsplit("/", 1)[-1]
        functions[name] = functions.get(name, 0) + count
        library = (found.group(3) or "?").rsplit("/", 1)[-1]
        objects[library] = objects.get(library, 0) + count
    return functions, objects


def excess_table(title: str, poll: dict[str, float], baseline: dict[str, float], rows: int) -> None:
    """The `rows` names whose instructions per call exceed the baseline's most."""
    names = sorted(poll.keys() | baseline.keys(), key=lambda name: baseline.get(name, 0) - poll.get(name, 0))
    print(f"\n| {title} | session poll | {BARE} | more |")
    print("|---|---|---|---|")
    for name in names[:rows]:
        mine, theirs = poll.get(name, 0), baseline.get(name, 0)
        print(f"| `{name}` | {mine:,.0f} | {theirs:,.0f} | {mine - theirs:+,.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collectors", default="top", help="comma-separated: all, top, apis, digest (default top)")
    parser.add_argument("--instances", type=int, default=40, help="fleet size (default 40)")
    parser.add_argument("--interval", type=float, default=10.0, help="poll interval, s (default 10)")
    parser.add_argument("--window", type=float, default=60.0, help="counted seconds (default 60)")
    parser.add_argument("--simulate", choices=sorted(SIMULATIONS),
                        help="also simulate the caches or the branch predictor, and count their events")
    parser.add_argument("--bare", action="store_true",
                        help="also count bench.py's bare loop (per page), and where the session poll's"
                             " instructions exceed it, by function")
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
                              ["sessions", *wanted], args.exporter_tree.resolve(), args.simulate, args.bare)
            counts = {name: (calls, totals(output)) for name, (calls, output) in results.items()}
            functions = ({name: by_function(results[name][1]) for name in ("sessions", BARE)}
                         if args.bare else {})
    finally:
        sim.stop()
    reference_calls, reference_counts = counts["sessions"]
    reference = {event: count / max(1, reference_calls) for event, count in reference_counts.items()}
    print(f"{args.instances} instances every {args.interval:g} s, {args.window:g} s counted\n")
    print("| collectors | API calls | instructions per call | vs the session poll alone |")
    print("|---|---|---|---|")
    for collectors, (calls, counted_events) in counts.items():
        per_call = counted_events["Ir"] / max(1, calls)
        print(f"| {collectors} | {calls:,} | {per_call:,.0f} | {per_call / reference['Ir']:.3f}x |")
    if BARE in counts:
        print(f"\nThe {BARE}'s figures are per page it fetched (its calls).")
    simulated = [event for event in reference_counts if event != "Ir"]
    if simulated:
        print(f"\nSimulated {args.simulate}, per call (vs the session poll alone)\n")
        print("| collectors | " + " | ".join(EVENT_NAMES.get(event, event) for event in simulated) + " |")
        print("|---|" + "---|" * len(simulated))
        for collectors, (calls, counted_events) in counts.items():
            cells = []
            for event in simulated:
                per_call = counted_events[event] / max(1, calls)
                ratio = f"{per_call / reference[event]:.3f}x" if reference[event] else "-"
                cells.append(f"{per_call:,.0f} ({ratio})")
            print(f"| {collectors} | " + " | ".join(cells) + " |")
    if functions:
        print(f"\nWhere the session poll's instructions per call exceed the {BARE}'s per page (own cost)")
        for kind, title, rows in ((1, "program or library", len(functions["sessions"][1]) + len(functions[BARE][1])),
                                  (0, "function", FUNCTIONS)):
            poll, baseline = ({name: count / max(1, counts[which][0]) for name, count in functions[which][kind].items()}
                              for which in ("sessions", BARE))
            excess_table(title, poll, baseline, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
