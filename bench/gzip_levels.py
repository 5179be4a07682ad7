"""Time gzip levels 1, 6 and 9 on a realistic /metrics body (the level chosen is scrape.GZIP_LEVEL).

    .venv/bin/python bench/gzip_levels.py [INSTANCES]

Renders INSTANCES (default 900: ~6 MB) simulated instances of 250 sessions each through the
exporter's own aggregation and rendering, then compresses the joined body as a scrape would.
"""

from __future__ import annotations

import statistics
import sys
import time
import zlib

from htap_exporter.config import MetricsConfig
from htap_exporter.exposition.writer import InstanceIdentity
from tests.fakes import make_store
from tests.fakes import PollState, render_instance
from htap_exporter.collectors.sessions.counting import aggregate, parse_session
from htap_exporter.simulator import Simulator


def body(instances: int) -> bytes:
    simulator = Simulator(instances=0)
    store = make_store()
    now = time.time()
    for index in range(instances):
        instance_id = f"{index:032x}in17"
        instance = simulator.add_instance(instance_id, f"htap-{index}", sessions=250, seed=index)
        stats = aggregate([parse_session(row) for row in instance.rows(now)], MetricsConfig())
        identity = InstanceIdentity(instance_id, f"htap-{index}", "0" * 32, "cn-north-4")
        store.put(instance_id, render_instance(identity, PollState(up=True, stats=stats, poll_duration=0.2,
                                                                    last_success=now)))
    return store.render()


def main() -> None:
    data = body(int(sys.argv[1]) if len(sys.argv) > 1 else 900)
    print(f"body: {len(data) / 1e6:.1f} MB")
    for level in (1, 6, 9):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
            out = compressor.compress(data) + compressor.flush()
            times.append(time.perf_counter() - start)
        print(f"level {level}: median {statistics.median(times) * 1000:.0f} ms, {len(out) / 1e3:.0f} KB"
              f" ({len(data) / len(out):.1f}x smaller)")


if __name__ == "__main__":
    main()
