"""What the scheduler knows about one (instance, collector), and its families.

Every collector gets `htap_collector_success`, `htap_collector_last_success_timestamp_seconds` and
`htap_collector_errors_total{reason}` (all reasons at 0 from the start). The collector that
reports `htap_up` (the session list) also carries the instance's `htap_up`, `htap_instance_info`
and `htap_poll_*` families, and the instance's status for the landing page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from htap_exporter.cloud.errors import REASONS
from htap_exporter.collectors.base import CollectorOutput
from htap_exporter.exposition.families import COUNTER, GAUGE, Family
from htap_exporter.exposition.store import InstanceBlock, InstanceStatus
from htap_exporter.exposition.writer import InstanceIdentity, number_text

HEAD_FAMILIES = (
    Family("htap_up", GAUGE, "1 if the last poll of this instance succeeded, else 0."),
    Family("htap_instance_info", GAUGE, "Static facts about a polled HTAP instance (always 1)."),
)
POLL_FAMILIES = (
    Family("htap_poll_duration_seconds", GAUGE, "Wall time of the last poll, all pages."),
    Family("htap_last_poll_success_timestamp_seconds", GAUGE, "Unix time of the last successful poll."),
    Family("htap_poll_errors", COUNTER, "Failed polls by reason."),
    Family("htap_poll_skipped_ticks", COUNTER,
           "Poll ticks skipped because the previous poll of the instance was still running."),
)
COLLECTOR_FAMILIES = (
    Family("htap_collector_success", GAUGE,
           "1 if the last run of the collector for this instance succeeded, else 0."),
    Family("htap_collector_last_success_timestamp_seconds", GAUGE,
           "Unix time of the last successful run of the collector for this instance."),
    Family("htap_collector_errors", COUNTER, "Failed runs of the collector for this instance, by reason."),
)


def layout_families(collector_families: tuple[Family, ...]) -> tuple[Family, ...]:
    """The order of a body: htap_up and the info line, the collectors' families (the session
    collector's first), the poll's own figures, then the per-collector figures."""
    return HEAD_FAMILIES + collector_families + POLL_FAMILIES + COLLECTOR_FAMILIES


@dataclass
class RunState:
    """One (instance, collector): rendered after every run."""

    up: bool = False
    output: CollectorOutput | None = None
    run_duration: float | None = None
    last_success: float | None = None
    errors: dict[str, int] = field(default_factory=lambda: {reason: 0 for reason in REASONS})
    failed_runs: int = 0  # the sum of `errors` (count_failure): their lines change only when it does
    skipped_ticks: int = 0
    last_error_reason: str | None = None  # None after a success, or before the first run
    # True from the moment the loop starts until its first run ends: the instance is listed
    # (htap_instance_info, counters at 0) but has no htap_up yet, as a target has no `up` before
    # its first scrape; dashboards list it, `htap_up == 0` alerts do not fire for it.
    pending: bool = False

    def count_failure(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1
        self.failed_runs += 1


def render_block(identity: InstanceIdentity, collector: str, state: RunState, *, reports_up: bool,
                 riders: Mapping[str, RunState] | None = None) -> InstanceBlock:
    """The block of one (instance, collector), with the figures of the collectors that ride on its
    runs (`riders`: their states by name) in it: one block, one store put and one line per
    family for them all, instead of a block each that would change on every run."""
    writer = identity.writer
    output = state.output if state.up else None  # no stale data served as current
    # The run's success time, in its text once: written for the poll and for each collector of the
    # block (riders succeed with their carrier, at the same time).
    stamp = number_text(state.last_success) if state.last_success is not None else ""
    samples: dict[str, bytes] = {}
    states = ((collector, state), *riders.items()) if riders else ((collector, state),)
    if reports_up:
        if not state.pending:
            samples["htap_up"] = writer.single("htap_up", 1 if state.up else 0)
        samples["htap_instance_info"] = writer.info
    if output is not None:
        samples.update(output.samples)
        for _, rider in states[1:]:
            if rider.up and rider.output is not None:
                samples.update(rider.output.samples)
    if reports_up:
        if state.run_duration is not None:
            samples["htap_poll_duration_seconds"] = writer.single("htap_poll_duration_seconds", state.run_duration)
        if state.last_success is not None:
            samples["htap_last_poll_success_timestamp_seconds"] = writer.single_text(
                "htap_last_poll_success_timestamp_seconds", stamp)
        # Written again only after a failure: not a dict of every reason made and compared each run.
        samples["htap_poll_errors"] = writer.cached(
            "htap_poll_errors", state.failed_runs,
            lambda: writer.by_label("htap_poll_errors_total", "reason", _errors(state), REASONS))
        samples["htap_poll_skipped_ticks"] = writer.single("htap_poll_skipped_ticks_total", state.skipped_ticks)
    if not state.pending:
        samples["htap_collector_success"] = writer.by_label(
            "htap_collector_success", "collector", {name: 1 if each.up else 0 for name, each in states},
            key=("success", collector))
    if state.last_success is not None:
        samples["htap_collector_last_success_timestamp_seconds"] = writer.by_label_text(
            "htap_collector_last_success_timestamp_seconds", "collector",
            {name: stamp if each.last_success == state.last_success else number_text(each.last_success)
             for name, each in states if each.last_success is not None})
    samples["htap_collector_errors"] = writer.cached(
        ("errors", collector), tuple([(name, each.failed_runs) for name, each in states]), lambda: writer.samples(
            "htap_collector_errors_total",
            [({"collector": name, "reason": reason}, count)
             for name, each in states for reason, count in _errors(each).items()]))
    status = None
    if reports_up:
        status = InstanceStatus(identity.instance_id, identity.instance_name, identity.project_id, identity.region,
                                state.up, None if state.up else state.last_error_reason, state.last_success,
                                output.sessions if output is not None else None,
                                output.top_sessions if output is not None else None)
    return InstanceBlock(samples, status)


def _errors(state: RunState) -> dict[str, int]:
    return {reason: state.errors.get(reason, 0) for reason in REASONS}
