#!/usr/bin/env python3
"""Writes dashboards/htap-exporter.json, the Grafana dashboard for htap-exporter.

    python3 deploy/grafana/dashboard.py           # rewrite the JSON
    python3 deploy/grafana/dashboard.py --check   # exit 1 if the committed JSON is not what this makes

Plain dictionaries, no dependency: the panels read top to bottom as the dashboard does, and a
test keeps the committed JSON equal to this script's output (edit here, then regenerate).
Every query selects `job=~"$job"` and, for per-instance series, `instance_id=~"$instance"`: the
instance variable lists the instances of the chosen projects from `htap_instance_info`, its values
the instance ids (names repeat across projects and regions), its texts the instance names.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "htap-exporter.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Per-instance series, and the exporter's own series (no instance labels).
INSTANCE = 'job=~"$job", instance_id=~"$instance"'
EXPORTER = 'job=~"$job"'
# The exporter's default idle_commands: sessions running any other command are "active".
ACTIVE = 'command!~"Sleep|Daemon"'
WIDTH = 24

Panel = dict[str, Any]


class Layout:
    """Places panels left to right, wrapping at Grafana's 24 columns."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def place(self, panel: Panel, width: int, height: int) -> Panel:
        if self.x + width > WIDTH:
            self.newline()
        panel["gridPos"] = {"h": height, "w": width, "x": self.x, "y": self.y}
        panel["id"] = self.next_id
        self.next_id += 1
        self.x += width
        self.row_height = max(self.row_height, height)
        return panel

    def newline(self) -> None:
        self.y += self.row_height
        self.x = 0
        self.row_height = 0

    def row(self, title: str) -> Panel:
        self.newline()
        panel = self.place({"type": "row", "title": title, "collapsed": False, "panels": []}, WIDTH, 1)
        self.newline()
        return panel


def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto", "refId": ref,
            "range": True, **extra}


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


def stat(title: str, description: str, expr: str, unit: str, steps: dict[str, Any],
         mappings: list[dict[str, Any]] | None = None) -> Panel:
    return {
        "type": "stat", "title": title, "description": description, "datasource": DATASOURCE,
        "targets": [target(expr, instant=True, range=False)],
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": steps, "mappings": mappings or [],
                                     "color": {"mode": "thresholds"}}, "overrides": []},
        "options": {"colorMode": "background", "graphMode": "none", "reduceOptions":
                    {"calcs": ["lastNotNull"], "fields": "", "values": False}, "textMode": "value"},
    }


def timeseries(title: str, description: str, targets: list[dict[str, Any]], unit: str, *,
               stack: bool = False, steps: dict[str, Any] | None = None, minimum: float | None = 0,
               maximum: float | None = None, draw: str = "line",
               overrides: list[dict[str, Any]] | None = None) -> Panel:
    custom: dict[str, Any] = {"drawStyle": draw, "lineWidth": 1, "fillOpacity": 30 if stack else 10,
                              "showPoints": "never", "spanNulls": False,
                              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    if steps is not None:
        custom["thresholdsStyle"] = {"mode": "line+area"}
    defaults: dict[str, Any] = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"},
                                "thresholds": steps or thresholds((None, "green"))}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {"legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                               "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def bargauge(title: str, description: str, expr: str, legend: str) -> Panel:
    return {
        "type": "bargauge", "title": title, "description": description, "datasource": DATASOURCE,
        "targets": [target(expr, legend, instant=True, range=False, format="time_series")],
        "fieldConfig": {"defaults": {"unit": "short", "min": 0, "color": {"mode": "continuous-BlYlRd"},
                                     "thresholds": thresholds((None, "green"))}, "overrides": []},
        "options": {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    }


def heatmap(title: str, description: str, expr: str) -> Panel:
    return {
        "type": "heatmap", "title": title, "description": description, "datasource": DATASOURCE,
        "targets": [target(expr, "{{le}}", format="heatmap")],
        "fieldConfig": {"defaults": {"custom": {"scaleDistribution": {"type": "linear"}}}, "overrides": []},
        "options": {
            # The buckets are already counts at each moment (a gauge histogram): no rate, no calculation.
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5,
                      "fill": "dark-orange", "scale": "exponential", "reverse": False},
            "yAxis": {"axisPlacement": "left", "unit": "s", "reverse": False},
            "rowsFrame": {"layout": "le"},
            "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": False},
            "legend": {"show": True},
            "filterValues": {"le": 1e-9},
        },
    }


def table(title: str, description: str, columns: list[tuple[str, str, str]], *,
          labels: dict[str, str], sort: str, descending: bool = True) -> Panel:
    """A table of instant queries, one row per series: `columns` are (expr, column title, unit),
    a query whose value says nothing (a selector's 1) with the title "" (its column hidden);
    `labels` the label columns shown, in order, with their titles (every other column is hidden).
    The queries' rows are merged on their shared labels; `sort` is the column sorted on."""
    targets = [target(expr, ref=chr(ord("A") + i), instant=True, range=False, format="table")
               for i, (expr, _, _) in enumerate(columns)]
    # A single query's value column is "Value"; with several, "Value #<refId>".
    value = (lambda i: "Value") if len(columns) == 1 else (lambda i: f"Value #{chr(ord('A') + i)}")
    shown = [(value(i), heading, unit) for i, (_, heading, unit) in enumerate(columns) if heading]
    rename = {**labels, **{name: heading for name, heading, _ in shown}}
    order = {name: i for i, name in enumerate([*labels, *(name for name, _, _ in shown)])}
    overrides = [{"matcher": {"id": "byName", "options": heading},
                  "properties": [{"id": "unit", "value": unit}]}
                 for _, heading, unit in shown]
    return {
        "type": "table", "title": title, "description": description, "datasource": DATASOURCE,
        "targets": targets,
        "transformations": [
            {"id": "merge", "options": {}},
            # Every column not named above (Time, job, instance, instance_id, __name__...) is hidden.
            {"id": "filterFieldsByName", "options": {"include": {"names": list(order)}}},
            {"id": "organize", "options": {"excludeByName": {}, "indexByName": order, "renameByName": rename}},
        ],
        "fieldConfig": {"defaults": {"unit": "short", "custom": {"align": "auto", "filterable": True}},
                        "overrides": overrides},
        "options": {"showHeader": True, "sortBy": [{"displayName": sort, "desc": descending}],
                    "footer": {"show": False, "reducer": ["sum"], "fields": ""}},
    }


# The instance variable: one entry per htap_instance_info series, valued by instance_id and shown
# by instance_name. query_result prints each series as `name{label="value", ...} VALUE TIME` with
# the labels sorted, so instance_id comes before instance_name.
INSTANCE_REGEX = '/instance_id="(?<value>[^"]+)".*instance_name="(?<text>[^"]+)"/'


def variables() -> list[dict[str, Any]]:
    def query(name: str, label: str, expr: str, *, multi: bool, include_all: bool,
              regex: str = "") -> dict[str, Any]:
        return {
            "type": "query", "name": name, "label": label, "datasource": DATASOURCE,
            "definition": expr, "query": {"query": expr, "refId": f"{name}-variable"},
            "refresh": 2, "sort": 1, "multi": multi, "includeAll": include_all, "regex": regex,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {},
            "options": [], "hide": 0,
        }

    return [
        {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "options": []},
        query("job", "Job", "label_values(htap_exporter_build_info, job)", multi=True, include_all=True),
        query("project", "Project", 'label_values(htap_instance_info{job=~"$job"}, project_id)',
              multi=True, include_all=True),
        # "All" expands to the instances listed here (the chosen projects'), not to ".*".
        query("instance", "Instance",
              'query_result(htap_instance_info{job=~"$job", project_id=~"$project"})',
              multi=True, include_all=True, regex=INSTANCE_REGEX),
    ]


def panels() -> list[Panel]:
    layout = Layout()
    out: list[Panel] = []

    def add(panel: Panel, width: int, height: int) -> None:
        out.append(layout.place(panel, width, height))

    out.append(layout.row("Overview"))
    add(stat("Instances polled", "Instances the exporter polls (one htap_up series each, up or not).",
             f"count(htap_up{{{INSTANCE}}})", "short", thresholds((None, "blue"))), 3, 4)
    add(stat("Instances up", "Instances whose last poll succeeded (htap_up = 1).",
             f"sum(htap_up{{{INSTANCE}}})", "short", thresholds((None, "green"))), 3, 4)
    add(stat("Instances failing", "Instances whose last poll failed; see Poll errors by reason.",
             f"count(htap_up{{{INSTANCE}}} == 0) or vector(0)", "short",
             thresholds((None, "green"), (1, "red"))), 3, 4)
    add(stat("Sessions", "Sessions in the last successful poll of the selected instances.",
             f"sum(htap_sessions{{{INSTANCE}}})", "short", thresholds((None, "blue"))), 3, 4)
    add(stat("Sessions in ERR", "Sessions whose state is ERR (the last statement failed).",
             f'sum(htap_sessions_by_state{{{INSTANCE}, state="ERR"}})', "short",
             thresholds((None, "green"), (1, "yellow"), (10, "red"))), 3, 4)
    add(stat("Longest active session", "The longest-running session whose command is not idle "
             "(Sleep, Daemon); the HtapLongRunningQuery alert fires over 30 minutes.",
             f"max(htap_session_max_duration_seconds{{{INSTANCE}, {ACTIVE}}})", "s",
             thresholds((None, "green"), (600, "yellow"), (1800, "red"))), 4, 4)
    add(stat("Config reload", "Whether the exporter's last configuration load succeeded.",
             f"min(htap_config_last_reload_successful{{{EXPORTER}}})", "none",
             thresholds((None, "red"), (1, "green")),
             [{"type": "value", "options": {"0": {"text": "failed", "index": 0},
                                            "1": {"text": "OK", "index": 1}}}]), 4, 4)

    out.append(layout.row("Polling"))
    add(timeseries("Up by instance", "1 when the last poll of the instance succeeded, 0 when it failed.",
                   [target(f"htap_up{{{INSTANCE}}}", "{{instance_name}}")], "none",
                   minimum=0, maximum=1, draw="line"), 6, 8)
    add(timeseries("Poll errors by reason", "Failed polls per second: auth, throttled, timeout, "
                   "network, http, bad_response.",
                   [target(f"sum by (reason) (rate(htap_poll_errors_total{{{INSTANCE}}}[$__rate_interval]))",
                           "{{reason}}")], "ops", stack=True), 6, 8)
    add(timeseries("Time since last successful poll", "Age of each instance's data; a few poll "
                   "intervals at most when healthy.",
                   [target(f"time() - htap_last_poll_success_timestamp_seconds{{{INSTANCE}}}",
                           "{{instance_name}}")], "s",
                   steps=thresholds((None, "green"), (300, "red"))), 6, 8)
    add(timeseries("Instances failing per collector", "Instances whose last run of each enabled "
                   "collector failed (htap_collector_success = 0); the HtapCollectorFailing alert fires "
                   "after 15 minutes. Why: htap_collector_errors_total by reason.",
                   [target(f"sum by (collector) (1 - htap_collector_success{{{INSTANCE}}})", "{{collector}}")],
                   "short", steps=thresholds((None, "green"), (1, "red"))), 6, 8)

    out.append(layout.row("Sessions"))
    add(timeseries("Sessions by instance", "Sessions per instance (solid) and each instance's "
                   "average over the last hour (dashed), the baseline of the HtapSessionSurge alert.",
                   [target(f"htap_sessions{{{INSTANCE}}}", "{{instance_name}}"),
                    target(f"avg_over_time(htap_sessions{{{INSTANCE}}}[1h])", "{{instance_name}} (1h avg)", "B")],
                   "short", overrides=[{"matcher": {"id": "byFrameRefID", "options": "B"},
                                        "properties": [{"id": "custom.lineStyle",
                                                        "value": {"fill": "dash", "dash": [10, 10]}},
                                                       {"id": "custom.fillOpacity", "value": 0}]}]), 12, 8)
    add(timeseries("Sessions by state", "OK, EOF, ERR and NOOP (StarRocks' state of the last statement).",
                   [target(f"sum by (state) (htap_sessions_by_state{{{INSTANCE}}})", "{{state}}")],
                   "short", stack=True), 12, 8)
    add(timeseries("Sessions by command", "What the sessions are doing: Sleep is idle, Query runs a statement.",
                   [target(f"sum by (command) (htap_sessions_by_command{{{INSTANCE}}})", "{{command}}")],
                   "short", stack=True), 12, 8)
    # The ten users with the highest peak over the whole range, chosen once (`@ end()`): a topk
    # evaluated at every step would show more than ten series over a range.
    by_user = f"sum by (user) (htap_sessions_by_user{{{INSTANCE}}})"
    add(timeseries("Sessions by user", "Sessions of the ten users with the highest peak in the "
                   "dashboard's time range (__other__: users beyond the exporter's max_users).",
                   [target(f"{by_user} and on (user) topk(10, max_over_time(({by_user})[$__range:] @ end()))",
                           "{{user}}")],
                   "short", stack=True), 12, 8)
    add(bargauge("Top users now", "Sessions per user, all selected instances.",
                 f"topk(10, sum by (user) (htap_sessions_by_user{{{INSTANCE}}}))", "{{user}}"), 8, 8)
    add(bargauge("Top databases now", "Sessions per database, all selected instances.",
                 f"topk(10, sum by (database) (htap_sessions_by_database{{{INSTANCE}}}))", "{{database}}"), 8, 8)
    add(timeseries("Longest session per command", "The longest-running session of each command. "
                   "A long Sleep is an idle connection; a long Query is a slow statement.",
                   [target(f"max by (command) (htap_session_max_duration_seconds{{{INSTANCE}}})", "{{command}}")],
                   "s", steps=thresholds((None, "green"), (1800, "red"))), 8, 8)
    add(heatmap("Active session durations", "How long the active (non-idle) sessions have been "
                "running, from the htap_active_session_duration_seconds gauge histogram: each cell is "
                "the number of sessions in a duration bucket at that moment.",
                f"sum by (le) (htap_active_session_duration_seconds_bucket{{{INSTANCE}}})"), 24, 9)
    # At most `count` series per instance (collectors.top_sessions); topk keeps a fleet-wide
    # selection readable. The digest and fingerprint columns appear with `sql: digest|fingerprint`.
    add(table("Longest sessions now", "The longest-running non-idle sessions of each instance, from "
              "htap_top_session_duration_seconds (collectors.top_sessions; empty while it is off). "
              "Ending one: docs/runbooks.md, \"ending a runaway session\".",
              [(f"topk(50, htap_top_session_duration_seconds{{{INSTANCE}}})", "Running for", "s")],
              labels={"instance_name": "Instance", "session_id": "Session", "user": "User",
                      "database": "Database", "command": "Command", "state": "State", "host": "Host",
                      "sql_digest": "Digest", "sql_fingerprint": "Statement"},
              sort="Running for"), 24, 8)

    out.append(layout.row("Replication"))
    add(timeseries("Replication tasks by stage", "TaurusDB -> StarRocks replication tasks per stage "
                   "(collectors.replication): wait, full (full sync), incremental (the steady state), "
                   "paused, cancelled, unknown.",
                   [target(f"sum by (stage) (htap_replication_tasks{{{INSTANCE}}})", "{{stage}}")],
                   "short", stack=True), 8, 8)
    add(timeseries("Abnormal replication tasks", "Tasks whose status is No, per instance; the "
                   "HtapReplicationTaskAbnormal alert fires after 5 minutes.",
                   [target(f"htap_replication_tasks_abnormal{{{INSTANCE}}}", "{{instance_name}}")],
                   "short", steps=thresholds((None, "green"), (1, "red"))), 8, 8)
    add(timeseries("Replication progress", "Progress of each task's current stage (a full sync "
                   "moves to 100 %, then the task is incremental) and of its catch-up (dashed).",
                   [target(f"htap_replication_task_progress_ratio{{{INSTANCE}}}",
                           "{{instance_name}} {{task_name}}"),
                    target(f"htap_replication_task_catchup_progress_ratio{{{INSTANCE}}}",
                           "{{instance_name}} {{task_name}} catch-up", "B")],
                   "percentunit", minimum=0, maximum=1,
                   overrides=[{"matcher": {"id": "byFrameRefID", "options": "B"},
                               "properties": [{"id": "custom.lineStyle",
                                               "value": {"fill": "dash", "dash": [10, 10]}}]}]), 8, 8)
    add(table("Replication tasks", "One row per task (at most collectors.replication.max_tasks per "
              "instance, abnormal ones first): its stage, progress, status (1 normal, 0 abnormal) and "
              "how long since the exporter saw its stage or progress change; HtapReplicationTaskStuck "
              "fires after an hour without change outside incremental.",
              [(f"htap_replication_task_stage{{{INSTANCE}}} == 1", "", "none"),
               (f"htap_replication_task_progress_ratio{{{INSTANCE}}}", "Progress", "percentunit"),
               (f"htap_replication_task_normal{{{INSTANCE}}}", "Normal", "none"),
               (f"time() - htap_replication_task_last_change_timestamp_seconds{{{INSTANCE}}}",
                "Unchanged for", "s")],
              labels={"instance_name": "Instance", "task_name": "Task", "stage": "Stage"},
              sort="Unchanged for"), 24, 8)

    out.append(layout.row("Nodes"))
    add(stat("Instances without an FE leader", "Instances whose node list has no fe-leader "
             "(collectors.nodes); HtapNoFeLeader fires after 5 minutes.",
             f'count(htap_nodes{{{INSTANCE}, role="fe-leader"}} == 0) or vector(0)', "short",
             thresholds((None, "green"), (1, "red"))), 4, 8)
    add(timeseries("Nodes by role", "StarRocks nodes per role, all selected instances: fe-leader, "
                   "fe-follower, fe-observer, be.",
                   [target(f"sum by (role) (htap_nodes{{{INSTANCE}}})", "{{role}}")], "short", stack=True), 10, 8)
    add(timeseries("Nodes by status", "StarRocks nodes per status (normal, abnormal, creating, "
                   "createfail, unknown); only instances whose TaurusDB instance id is known.",
                   [target(f"sum by (status) (htap_node_status{{{INSTANCE}}})", "{{status}}")],
                   "short", stack=True), 10, 8)
    add(table("Nodes", "Every node with its role and current status; HtapNodeAbnormal fires after "
              "5 minutes abnormal. No status without the instance's TaurusDB id.",
              [(f"htap_node_info{{{INSTANCE}}}", "", "none"),
               (f"htap_node_status{{{INSTANCE}}} == 1", "", "none")],
              labels={"instance_name": "Instance", "node_name": "Node", "node_id": "Node id",
                      "role": "Role", "status": "Status"},
              sort="Instance", descending=False), 24, 8)

    out.append(layout.row("Query queue"))
    add(timeseries("Running queries and the queue's limit", "Sessions running a Query (solid, from "
                   "the session list: FE connections) beside the query queue's concurrency limit times "
                   "the instance's BEs (dashed; only where a limit is set). The API exposes no live queue "
                   "depth.",
                   [target(f'htap_sessions_by_command{{{INSTANCE}, command="Query"}}', "{{instance_name}} running"),
                    target(f"(htap_query_queue_concurrency_limit{{{INSTANCE}}} > 0) * on (job, instance, instance_id) "
                           f'htap_nodes{{{INSTANCE}, role="be"}}', "{{instance_name}} limit", "B")],
                   "short", overrides=[{"matcher": {"id": "byFrameRefID", "options": "B"},
                                        "properties": [{"id": "custom.lineStyle",
                                                        "value": {"fill": "dash", "dash": [10, 10]}},
                                                       {"id": "custom.fillOpacity", "value": 0}]}]), 10, 8)
    add(table("Query queue rules", "Each instance's query-queue rule (collectors.query_queue): on or "
              "off, the concurrency limit per BE, the queue length, how long a query may wait, and the "
              "memory and CPU limits (0: unlimited).",
              [(f"htap_query_queue_enabled{{{INSTANCE}}}", "Enabled", "none"),
               (f"htap_query_queue_concurrency_limit{{{INSTANCE}}}", "Concurrency per BE", "short"),
               (f"htap_query_queue_max_queued_queries{{{INSTANCE}}}", "Max queued", "short"),
               (f"htap_query_queue_pending_timeout_seconds{{{INSTANCE}}}", "Pending timeout", "s"),
               (f"htap_query_queue_memory_limit_ratio{{{INSTANCE}}}", "Memory limit", "percentunit"),
               (f"htap_query_queue_cpu_limit_ratio{{{INSTANCE}}}", "CPU limit", "percentunit")],
              labels={"instance_name": "Instance"}, sort="Concurrency per BE"), 14, 8)

    out.append(layout.row("Cloud API"))
    add(timeseries("API requests by code", "HTTP requests to the cloud per second, by API and status "
                   "code (timeout/error: no HTTP answer).",
                   [target(f"sum by (api, code) (rate(htap_api_requests_total{{{EXPORTER}}}[$__rate_interval]))",
                           "{{api}} {{code}}")], "reqps", stack=True), 8, 8)
    add(timeseries("API error ratio", "Share of requests that did not get a 2xx answer, by API.",
                   [target(f'(sum by (api) (rate(htap_api_requests_total{{{EXPORTER}, code!~"2.."}}[$__rate_interval]))'
                           f" or 0 * sum by (api) (rate(htap_api_requests_total{{{EXPORTER}}}[$__rate_interval])))"
                           f" / sum by (api) (rate(htap_api_requests_total{{{EXPORTER}}}[$__rate_interval]))",
                           "{{api}}")], "percentunit", minimum=0, maximum=1,
                   steps=thresholds((None, "green"), (0.05, "red"))), 8, 8)
    add(timeseries("API latency", "Request duration quantiles, by API.",
                   [target("histogram_quantile(0.5, sum by (api, le) "
                           f"(rate(htap_api_request_duration_seconds_bucket{{{EXPORTER}}}[$__rate_interval])))",
                           "{{api}} p50"),
                    target("histogram_quantile(0.99, sum by (api, le) "
                           f"(rate(htap_api_request_duration_seconds_bucket{{{EXPORTER}}}[$__rate_interval])))",
                           "{{api}} p99", "B")], "s"), 8, 8)

    out.append(layout.row("Fleet"))
    project = f'{EXPORTER}, project_id=~"$project"'
    # Every shard discovers the whole project: max, not sum, over the replicas.
    add(timeseries("Discovered instances", "HTAP instances found by each project's last successful "
                   "discovery, after its filters (the same on every shard of a sharded setup).",
                   [target(f"max by (project_id) (htap_discovered_instances{{{project}}})", "{{project_id}}")],
                   "short"), 8, 8)
    add(timeseries("Time since last discovery", "Age of each project's instance list; the "
                   "HtapDiscoveryStale alert fires over 30 minutes. A failed refresh keeps the last list.",
                   [target(f"time() - max by (project_id) (htap_discovery_last_success_timestamp_seconds{{{project}}})",
                           "{{project_id}}")], "s",
                   steps=thresholds((None, "green"), (1800, "red"))), 8, 8)
    add(timeseries("Effective poll interval", "The poll interval each replica sustains per project: "
                   "poll.interval, or longer when the project's api_rate_limit cannot poll the whole "
                   "fleet that often.",
                   [target(f"htap_poll_effective_interval_seconds{{{project}}}", "{{project_id}} {{instance}}")],
                   "s"), 8, 8)

    out.append(layout.row("Exporter"))
    add(timeseries("Poll duration", "Wall time of each instance's last poll, all pages.",
                   [target(f"htap_poll_duration_seconds{{{INSTANCE}}}", "{{instance_name}}")], "s"), 6, 8)
    add(timeseries("Skipped poll ticks", "Ticks skipped because the previous poll of the instance was "
                   "still running: polls take longer than the interval.",
                   [target("sum by (instance_name)"
                           f" (rate(htap_poll_skipped_ticks_total{{{INSTANCE}}}[$__rate_interval]))",
                           "{{instance_name}}")], "ops"), 6, 8)
    add(timeseries("Exporter CPU", "CPU used by the exporter process (1 = one core).",
                   [target(f"rate(process_cpu_seconds_total{{{EXPORTER}}}[$__rate_interval])", "{{instance}}")],
                   "percentunit"), 6, 8)
    add(timeseries("Exporter memory", "Resident memory of the exporter process; about 120 KB per "
                   "polled instance on top of ~40 MB.",
                   [target(f"process_resident_memory_bytes{{{EXPORTER}}}", "{{instance}}")], "bytes"), 6, 8)
    return out


def dashboard() -> dict[str, Any]:
    return {
        "uid": "htap-exporter",
        "title": "TaurusDB HTAP sessions",
        "description": "Sessions of Huawei Cloud TaurusDB HTAP instances, from htap-exporter.",
        "tags": ["htap-exporter", "taurusdb", "prometheus"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "templating": {"list": variables()},
        "annotations": {"list": []},
        "links": [],
        "panels": panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT.name} is out of date: run python3 deploy/grafana/dashboard.py", file=sys.stderr)
            return 1
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
