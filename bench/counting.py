#!/usr/bin/env python3
"""Counting a page of sessions, alone: microseconds per page of 100 simulator rows, decoded once
(as the exporter decodes them).

    .venv/bin/python bench/counting.py [--exporter-tree DIR]

Each instance's poll is a fresh counter fed its pages (250 sessions: 3 pages), then its result;
the figure is the best of several repeats, per page (the machine may be shared: compare runs made
back to back, e.g. before and after a change with --exporter-tree).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exporter-tree", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    sys.path.insert(0, str(args.exporter_tree.resolve()))
    from htap_exporter.collectors.labels import LabelCache
    from htap_exporter.collectors.sessions.counting import SessionCounter
    from htap_exporter.collectors.sessions import pages as session_pages
    from htap_exporter.config import MetricsConfig
    from htap_exporter.simulator.instances import SimInstance

    now = 1_700_000_000.0
    bodies = []
    for index in range(args.instances):
        instance = SimInstance(f"i{index}", f"n{index}", 250, seed=index)
        instance.freeze(now)
        bodies.append([body for _, body in sorted((instance.static_pages or {}).items())])
    pages = sum(len(poll) for poll in bodies)
    for hosts in (False, True):
        # Decoded as the exporter decodes them: by its fleet's PageDecoder, which has learnt the label
        # values (an older tree, without one: each page on its own).
        if hasattr(session_pages, "PageDecoder"):
            decoder = session_pages.PageDecoder(hosts=hosts)
            decoder.decode(bodies[0][0])
            decode = decoder.decode
        else:
            decode = session_pages.decode_page
        polls = [[decode(body) for body in poll] for poll in bodies]
        config = MetricsConfig(hosts=hosts)
        labels = LabelCache(config.max_label_length)
        best = float("inf")
        for _ in range(args.repeats):
            started = time.process_time()  # CPU time: a shared machine takes the core away now and then
            for poll in polls:
                counter = SessionCounter(config, labels=labels)
                for page in poll:
                    counter.add(page)
                counter.result()
            best = min(best, time.process_time() - started)
        print(f"metrics.hosts={str(hosts).lower()}: {1e6 * best / pages:.1f} us per page ({pages} pages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
