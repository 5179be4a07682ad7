"""Negotiation, name[] filters and gzip over prepared bytes, checked with prometheus_client's parsers."""

from __future__ import annotations

import asyncio
import gzip

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import make_store
from htap_exporter.exposition import negotiation as scrape
from htap_exporter.exposition.negotiation import GzipCache, filter_names, gzip_accepted, select_families, wants_openmetrics

PROMETHEUS_2_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                       "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def test_negotiation_follows_prometheus_client() -> None:
    assert wants_openmetrics(PROMETHEUS_2_ACCEPT)
    assert wants_openmetrics("application/openmetrics-text")
    assert wants_openmetrics("application/openmetrics-text; version=1.0.0; escaping=underscores")
    assert not wants_openmetrics("application/openmetrics-text; version=0.0.1")
    assert not wants_openmetrics("text/plain;version=0.0.4")
    assert not wants_openmetrics(None)
    assert gzip_accepted("gzip, deflate, br")
    assert gzip_accepted("deflate;q=1, GZIP;q=0.5")
    assert not gzip_accepted("gzip;q=0")
    assert not gzip_accepted("identity")
    assert not gzip_accepted(None)


def registry() -> CollectorRegistry:
    r = CollectorRegistry()
    Gauge("htap_up", "Up.", ["instance_id"], registry=r).labels("a").set(1)
    Counter("htap_poll_errors", "Errors.", ["reason"], registry=r).labels("auth").inc(3)
    Histogram("htap_api_request_duration_seconds", "Duration.", registry=r, buckets=(1, 5)).observe(2)
    return r


def test_filter_matches_sample_names_like_restricted_registry() -> None:
    r = registry()
    names = ["htap_up", "htap_poll_errors_total", "htap_api_request_duration_seconds_bucket"]
    # The same families and samples; restricted_registry's order follows a set, so compare sorted.
    def blocks(body: bytes) -> list[bytes]:
        return sorted(b"# HELP" + block for block in body.split(b"# HELP") if block)

    expected = generate_latest(r.restricted_registry(names))
    assert blocks(filter_names(generate_latest(r), names)) == blocks(expected)
    om = filter_names(generate_openmetrics(r).removesuffix(b"# EOF\n"), names) + b"# EOF\n"
    assert blocks(om.removesuffix(b"# EOF\n")) == blocks(generate_openmetrics(r.restricted_registry(names))
                                                       .removesuffix(b"# EOF\n"))
    families = {f.name: f for f in parse_openmetrics(om.decode())}
    assert [s.value for s in families["htap_poll_errors"].samples] == [3]
    assert filter_names(generate_latest(r), ["nothing"]) == b""


async def test_gzip_cache_shares_one_compression_per_key(monkeypatch) -> None:
    calls = []
    real = scrape._gzip_open

    def counting(data: bytes):
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(scrape, "_gzip_open", counting)
    one = generate_latest(registry())
    store_part = one * (scrape.THREAD_THRESHOLD // len(one) + 2)  # > THREAD_THRESHOLD: compressed in a thread
    assert len(store_part) > scrape.THREAD_THRESHOLD
    cache = GzipCache()

    def part(data: bytes):
        async def get() -> list[bytes]:
            return [data[:1000], data[1000:]]
        return get

    bodies = await asyncio.gather(*(cache.body(1, part(store_part), f"tail {n}\n".encode()) for n in range(5)))
    assert len(calls) == 1
    assert len({id(prefix) for prefix, _ in bodies}) == 1  # one shared prefix, not copies
    for n, body in enumerate(bodies):
        assert gzip.decompress(b"".join(body)) == store_part + f"tail {n}\n".encode()
    assert gzip.decompress(b"".join(await cache.body(1, part(b"ignored"), b""))) == store_part
    assert len(calls) == 1
    assert gzip.decompress(b"".join(await cache.body(2, part(b"# new\n"), b"x\n"))) == b"# new\nx\n"
    assert len(calls) == 2
    parsed = list(text_string_to_metric_families(gzip.decompress(b"".join(bodies[0])).decode().split("tail")[0]))
    assert parsed


def test_selecting_families_equals_filtering_the_whole_body() -> None:
    from htap_exporter.exposition.writer import InstanceIdentity
    from tests.fakes import PollState, render_instance
    from htap_exporter.collectors.sessions.counting import SessionCounter
    from htap_exporter.config import MetricsConfig
    from htap_exporter.exposition.store import Store

    counter = SessionCounter(MetricsConfig())
    counter.add_page([{"id": str(n), "user": f"u{n % 3}", "command": ["Query", "Sleep"][n % 2], "duration": n}
                      for n in range(40)])
    store = make_store()
    empty = SessionCounter(MetricsConfig()).result()  # families present with no samples (no users yet)
    identity = InstanceIdentity("idle", "idle", "p", "r")
    store.put(identity.instance_id, render_instance(identity, PollState(up=True, stats=empty)))
    for index, up in enumerate([True, False, True]):
        identity = InstanceIdentity(f"id{index}", f"n{index}", "p", "r")
        store.put(identity.instance_id, render_instance(identity, PollState(up=up, stats=counter.result(),
                                                                            poll_duration=0.5)))
    for names in (["htap_up"], ["htap_sessions_by_user", "htap_poll_errors_total"], ["htap_poll_errors"],
                  ["htap_sessions_by_database"],
                  ["htap_active_session_duration_seconds_bucket"], ["htap_active_session_duration_seconds_gcount"],
                  ["htap_active_session_duration_seconds_gsum", "htap_up", "nothing"], ["nothing"], []):
        for openmetrics in (False, True):
            assert (select_families(store.families(openmetrics), names)
                    == filter_names(store.render(openmetrics), names)), (names, openmetrics)
    idle_only = make_store()  # a family every instance has, none with samples: nothing to select
    idle_only.put("idle", render_instance(InstanceIdentity("idle", "idle", "p", "r"), PollState(up=True, stats=empty)))
    for openmetrics in (False, True):
        names = ["htap_sessions_by_user"]
        assert select_families(idle_only.families(openmetrics), names) == b""
        assert filter_names(idle_only.render(openmetrics), names) == b""
