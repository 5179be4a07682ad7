"""A collector's block, with the figures of the collectors that ride on its runs."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from htap_exporter.collectors.base import CollectorOutput
from htap_exporter.exposition.writer import InstanceIdentity
from htap_exporter.runtime.state import RunState, render_block

IDENTITY = InstanceIdentity("i1", "orders-htap", "p1", "cn-north-4")
TOP = "htap_top_session_duration_seconds"


def samples_of(block_samples: dict[str, bytes]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = b"".join(block_samples.values()).decode()
    return {(sample.name, tuple(sorted((k, v) for k, v in sample.labels.items() if k not in ("instance_id",
                                                                                           "instance_name")))):
            sample.value for family in text_string_to_metric_families(text) for sample in family.samples}


def test_a_rider_is_written_in_its_carriers_block_and_fails_with_it():
    top_lines = IDENTITY.writer.samples(TOP, [({"session_id": "7"}, 120.0)])
    main = RunState(up=True, output=CollectorOutput({}, sessions=3, riders={"top_sessions": CollectorOutput({})}),
                    last_success=1.7e9)
    rider = RunState(up=True, output=CollectorOutput({TOP: top_lines}), last_success=1.7e9)
    block = render_block(IDENTITY, "sessions", main, reports_up=True, riders={"top_sessions": rider})
    found = samples_of(block.samples)
    assert found[(TOP, (("session_id", "7"),))] == 120.0
    for collector in ("sessions", "top_sessions"):
        assert found[("htap_collector_success", (("collector", collector),))] == 1
        assert found[("htap_collector_last_success_timestamp_seconds", (("collector", collector),))] == 1.7e9
        assert found[("htap_collector_errors_total", (("collector", collector), ("reason", "http")))] == 0

    # The session list fails: so does the rider, whose samples go with the carrier's.
    for state in (main, rider):
        state.up, state.output = False, None
        state.count_failure("http")
    failed = samples_of(render_block(IDENTITY, "sessions", main, reports_up=True,
                                     riders={"top_sessions": rider}).samples)
    assert not any(name == TOP for name, _ in failed)
    for collector in ("sessions", "top_sessions"):
        assert failed[("htap_collector_success", (("collector", collector),))] == 0
        assert failed[("htap_collector_errors_total", (("collector", collector), ("reason", "http")))] == 1


def test_each_collector_of_a_block_shows_its_own_last_success():
    last = ("htap_collector_last_success_timestamp_seconds",)
    main = RunState(up=True, output=CollectorOutput({}, sessions=3), last_success=1.7e9 + 30.5)
    # The rider's part of the last run was refused: it keeps the time of its last success.
    rider = RunState(up=False, last_success=1.7e9 + 0.25)
    rider.count_failure("bad_response")
    found = samples_of(render_block(IDENTITY, "sessions", main, reports_up=True, riders={"top_sessions": rider}).samples)
    assert found[(*last, (("collector", "sessions"),))] == 1.7e9 + 30.5
    assert found[(*last, (("collector", "top_sessions"),))] == 1.7e9 + 0.25
    assert found[("htap_last_poll_success_timestamp_seconds", ())] == 1.7e9 + 30.5

    # Both succeed in the next run, at the same time.
    main.last_success = 1.7e9 + 60.125
    rider.up, rider.output, rider.last_success = True, CollectorOutput({}), 1.7e9 + 60.125
    found = samples_of(render_block(IDENTITY, "sessions", main, reports_up=True, riders={"top_sessions": rider}).samples)
    for collector in ("sessions", "top_sessions"):
        assert found[(*last, (("collector", collector),))] == 1.7e9 + 60.125
    assert found[("htap_last_poll_success_timestamp_seconds", ())] == 1.7e9 + 60.125
