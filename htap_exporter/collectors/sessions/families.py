"""The session collector's families and their samples, from one poll's InstanceStats."""

from __future__ import annotations

from htap_exporter.collectors.sessions.counting import InstanceStats
from htap_exporter.exposition.families import GAUGE, GAUGE_HISTOGRAM, Family
from htap_exporter.exposition.writer import InstanceWriter

ACTIVE_HISTOGRAM = "htap_active_session_duration_seconds"

FAMILIES = (
    Family("htap_sessions", GAUGE, "Sessions in the last successful poll."),
    Family("htap_sessions_by_state", GAUGE, "Sessions by query state."),
    Family("htap_sessions_by_command", GAUGE, "Sessions by command."),
    Family("htap_sessions_by_user", GAUGE, "Sessions by user (top metrics.max_users, the rest as __other__)."),
    Family("htap_sessions_by_database", GAUGE,
           "Sessions by database (top metrics.max_databases, the rest as __other__)."),
    Family("htap_sessions_by_host", GAUGE,
           "Sessions by client host, port stripped (top metrics.max_hosts, the rest as __other__)."),
    Family("htap_session_max_duration_seconds", GAUGE, "Longest duration of a session's current command, per command."),
    Family(ACTIVE_HISTOGRAM, GAUGE_HISTOGRAM, "Non-idle sessions by the duration of their current command."),
)


def session_samples(writer: InstanceWriter, stats: InstanceStats) -> dict[str, bytes]:
    """Family name -> sample lines of one instance's poll (the gauge histogram as three entries)."""
    samples = {
        "htap_sessions": writer.single("htap_sessions", stats.sessions),
        "htap_sessions_by_state": writer.by_label("htap_sessions_by_state", "state", stats.by_state),
        "htap_sessions_by_command": writer.by_label("htap_sessions_by_command", "command", stats.by_command),
        "htap_sessions_by_user": writer.by_label("htap_sessions_by_user", "user", stats.by_user),
        "htap_sessions_by_database": writer.by_label("htap_sessions_by_database", "database", stats.by_database),
    }
    if stats.by_host is not None:
        samples["htap_sessions_by_host"] = writer.by_label("htap_sessions_by_host", "host", stats.by_host)
    samples["htap_session_max_duration_seconds"] = writer.by_label(
        "htap_session_max_duration_seconds", "command", stats.max_duration_by_command)
    buckets, gcount, gsum = writer.histogram(ACTIVE_HISTOGRAM, stats.active_buckets, stats.active_count,
                                             stats.active_sum)
    samples[ACTIVE_HISTOGRAM] = buckets
    samples[ACTIVE_HISTOGRAM + "_gcount"] = gcount
    samples[ACTIVE_HISTOGRAM + "_gsum"] = gsum
    return samples
