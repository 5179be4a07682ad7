"""The landing page: what the exporter is and how every instance is doing, as plain HTML.

No script, no external asset: an exporter often runs where the browser cannot reach the internet.
The only style is inline; under a strict Content-Security-Policy from the web config the page
loses its colours, not its content."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    from htap_exporter.exposition.store import InstanceStatus

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;color:#1d1d1f;max-width:80rem}
h1{font-size:1.6rem;margin-bottom:.2rem}
.version{color:#555;margin-top:0}
nav a{margin-right:1.2rem}
table{border-collapse:collapse;margin-top:1rem;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.4rem .7rem;text-align:left;vertical-align:top}
th{background:#f3f4f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td{white-space:nowrap}
td.name{white-space:normal;overflow-wrap:anywhere}
.up{color:#116329;font-weight:600}
.down{color:#b42318;font-weight:600}
.pending{color:#8a6d00;font-weight:600}
code{font-size:.9em}
tr.top>td{border-bottom:1px solid #ddd;padding:0 .7rem .6rem 2rem}
table.top{margin-top:.2rem;width:auto;font-size:.9em}
table.top th{background:#fafafa}
"""
# One instance's top sessions: (labels of htap_top_session_duration_seconds, duration in seconds).
TopSessionSamples = Sequence[tuple[Mapping[str, str], float]]


def age_text(seconds: float) -> str:
    if seconds < 0:
        seconds = 0
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def duration_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def render_top_sessions(samples: TopSessionSamples) -> str:
    """An instance's longest-running sessions as a table, longest first. The digest column is there
    when the samples have one (`sql: digest` or `fingerprint`); the statement never is."""
    with_digest = any("sql_digest" in labels for labels, _ in samples)
    head = "".join(f"<th>{name}</th>" for name in ("Running for", "Session id", "User", "Database", "Command")
                   + (("SQL digest",) if with_digest else ()))
    rows = []
    for labels, seconds in sorted(samples, key=lambda sample: -sample[1]):
        cells = [f'<td class="num" title="{seconds:.0f} s">{escape(duration_text(seconds))}</td>']
        cells += [f"<td><code>{escape(labels.get('session_id', ''))}</code></td>"]
        cells += [f'<td class="name">{escape(labels.get(name, ""))}</td>' for name in ("user", "database", "command")]
        if with_digest:
            cells.append(f"<td><code>{escape(labels.get('sql_digest', ''))}</code></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="top"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _state_cell(status: "InstanceStatus") -> str:
    if status.up:
        return '<td class="up">up</td>'
    if status.last_error_reason is None:
        return '<td class="pending">not polled yet</td>'
    return f'<td class="down">down: {escape(status.last_error_reason)}</td>'


def render_landing(*, version: str, telemetry_path: str, statuses: Sequence["InstanceStatus"], now: float,
                   top_sessions: Mapping[str, TopSessionSamples] | None = None) -> str:
    """`top_sessions`: instance id -> its top sessions, when that collector is on; an instance with
    any gets a row of them under its own."""
    rows = []
    for status in sorted(statuses, key=lambda s: (s.project_id, s.instance_name, s.instance_id)):
        last = "never" if status.last_success is None else age_text(now - status.last_success)
        sessions = "" if status.sessions is None else str(status.sessions)
        rows.append(
            f"<tr><td><code>{escape(status.project_id)}</code></td>"
            f"<td class=\"name\">{escape(status.instance_name)}</td>"
            f"<td><code>{escape(status.instance_id)}</code></td>{_state_cell(status)}"
            f"<td>{escape(last)}</td><td class=\"num\">{escape(sessions)}</td></tr>")
        top = top_sessions.get(status.instance_id) if top_sessions else None
        if top:
            rows.append(f'<tr class="top"><td colspan="6">Longest-running sessions{render_top_sessions(top)}</td></tr>')
    up = sum(1 for s in statuses if s.up)
    table = (
        "<table><thead><tr><th>Project</th><th>Name</th><th>Instance id</th><th>State</th>"
        "<th>Last successful poll</th><th>Sessions</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>"
        if rows else "<p>No instances are configured.</p>")
    path = escape(telemetry_path)
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>HTAP Exporter</title><style>{STYLE}</style></head><body>"
        f"<h1>HTAP Exporter</h1><p class=\"version\">Version {escape(version)}</p>"
        f"<nav><a href=\"{path}\">Metrics</a><a href=\"/-/healthy\">Health</a>"
        f"<a href=\"/-/ready\">Readiness</a></nav>"
        f"<h2>Instances</h2><p>{up} of {len(statuses)} up.</p>{table}"
        "</body></html>")
