"""The landing page: what the exporter is and how every instance is doing, as plain HTML.

No script, no external asset: an exporter often runs where the browser cannot reach the internet.
The only style is inline; under a strict Content-Security-Policy from the web config the page
loses its colours, not its content."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Sequence

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
"""


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


def _state_cell(status: "InstanceStatus") -> str:
    if status.up:
        return '<td class="up">up</td>'
    if status.last_error_reason is None:
        return '<td class="pending">not polled yet</td>'
    return f'<td class="down">down: {escape(status.last_error_reason)}</td>'


def render_landing(*, version: str, telemetry_path: str, statuses: Sequence["InstanceStatus"], now: float) -> str:
    rows = []
    for status in sorted(statuses, key=lambda s: (s.project_id, s.instance_name, s.instance_id)):
        last = "never" if status.last_success is None else age_text(now - status.last_success)
        sessions = "" if status.sessions is None else str(status.sessions)
        rows.append(
            f"<tr><td><code>{escape(status.project_id)}</code></td><td class=\"name\">{escape(status.instance_name)}</td>"
            f"<td><code>{escape(status.instance_id)}</code></td>{_state_cell(status)}"
            f"<td>{escape(last)}</td><td class=\"num\">{escape(sessions)}</td></tr>")
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
