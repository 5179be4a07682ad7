"""The landing page's top sessions: a table per instance, every value escaped."""

from __future__ import annotations

from html.parser import HTMLParser

from htap_exporter.web.landing import duration_text, render_landing, render_top_sessions
from htap_exporter.exposition.store import InstanceStatus

HOSTILE = '<script>alert("x")</script>&'


def status(instance_id: str) -> InstanceStatus:
    return InstanceStatus(instance_id=instance_id, instance_name=f"name-{instance_id}", project_id="p", region="r",
                          up=True, last_error_reason=None, last_success=90.0, sessions=3)


class Cells(HTMLParser):
    """Text of every cell, per table row, and the tags seen."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self.rows[-1].append("")

    def handle_data(self, data):
        if self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def parsed(html: str) -> Cells:
    cells = Cells()
    cells.feed(html)
    return cells


def test_top_sessions_are_a_table_longest_first_with_every_value_escaped():
    samples = [({"session_id": "7", "user": "app", "database": "orders", "command": "Query", "state": "OK"}, 75.0),
               ({"session_id": HOSTILE, "user": HOSTILE, "database": HOSTILE, "command": HOSTILE,
                 "sql_digest": HOSTILE}, 4000.0)]
    html = render_top_sessions(samples)
    assert "<script>" not in html
    cells = parsed(html)
    assert "script" not in cells.tags
    assert cells.rows == [["Running for", "Session id", "User", "Database", "Command", "SQL digest"],
                          ["66 min 40 s", HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE],
                          ["75 s", "7", "app", "orders", "Query", ""]]


def test_without_digests_there_is_no_digest_column():
    html = render_top_sessions([({"session_id": "1", "user": "u", "database": "d", "command": "Query"}, 61.0)])
    assert parsed(html).rows[0] == ["Running for", "Session id", "User", "Database", "Command"]


def test_the_landing_page_nests_top_sessions_under_their_instance_only_when_given():
    statuses = [status("a"), status("b")]
    plain = render_landing(version="1", telemetry_path="/metrics", statuses=statuses, now=100.0)
    assert plain == render_landing(version="1", telemetry_path="/metrics", statuses=statuses, now=100.0,
                                   top_sessions=None)
    assert "Longest-running" not in plain
    top = {"b": [({"session_id": "42", "user": "etl", "database": "dw", "command": "Query"}, 900.0)], "a": []}
    html = render_landing(version="1", telemetry_path="/metrics", statuses=statuses, now=100.0, top_sessions=top)
    rows = parsed(html).rows
    names = [row[1] for row in rows if len(row) == 6 and row[1].startswith("name-")]
    assert names == ["name-a", "name-b"]
    nested = rows.index(["15 min 00 s", "42", "etl", "dw", "Query"])
    # the instance's row, the nested row (its caption), the nested table's header, the session
    assert rows[nested - 3][1] == "name-b" and rows[nested - 2] == ["Longest-running sessions"]
    assert html.count("Longest-running sessions") == 1


def test_durations_read_as_time():
    assert [duration_text(value) for value in (0, 59.9, 119, 120, 3599, 7200, 90061)] == [
        "0 s", "59 s", "119 s", "2 min 00 s", "59 min 59 s", "2 h 00 min", "25 h 01 min"]
