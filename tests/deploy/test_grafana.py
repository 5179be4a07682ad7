"""deploy/grafana: the committed dashboard is the generator's output, usable as it stands."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

from tests.deploy.tools import COMPOSE, DASHBOARD, DEPLOY, load_yaml

GENERATOR = DEPLOY / "grafana" / "dashboard.py"


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def test_committed_json_is_the_generators_output() -> None:
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_variables_choose_project_and_instance_from_instance_info() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["project"]["query"]["query"] == 'label_values(htap_instance_info{job=~"$job"}, project_id)'
    assert variables["instance"]["query"]["query"] == \
        'query_result(htap_instance_info{job=~"$job", project_id=~"$project"})'
    for name in ("job", "project", "instance"):
        assert variables[name]["multi"] and variables[name]["includeAll"]
        # "All" must mean the listed values (the chosen projects' instances), not ".*".
        assert "allValue" not in variables[name]


def test_the_instance_variable_is_valued_by_id_and_shows_the_name() -> None:
    """Names repeat across projects and regions; ids do not. Grafana's named groups pick both out
    of query_result's lines (labels sorted, as Prometheus prints them)."""
    (instance,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "instance"]
    regex = re.compile(instance["regex"].strip("/").replace("(?<", "(?P<"))
    line = ('htap_instance_info{instance="exporter:9978", instance_id="aaaa0000000000000000000000000000in17", '
            'instance_name="orders-htap", job="htap-exporter", project_id="p1", region="cn-north-4"} 1 1700000000000')
    match = regex.search(line)
    assert match and match.group("value") == "aaaa0000000000000000000000000000in17"
    assert match.group("text") == "orders-htap"


def test_every_panel_queries_through_the_variables_and_has_a_unit() -> None:
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["description"], panel["title"]
        if panel["type"] != "heatmap":
            assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        for target in panel["targets"]:
            assert 'job=~"$job"' in target["expr"], panel["title"]
            # Per-instance series are chosen by id, never by name.
            assert "instance_name=~" not in target["expr"], panel["title"]
            if re.search(r"htap_(sessions|up|poll_(errors|duration|skipped)|last_poll|active_session|top_session"
                         r"|replication|nodes?_|query_queue|collector)", target["expr"]):
                assert 'instance_id=~"$instance"' in target["expr"], panel["title"]


def test_instances_polled_counts_and_instances_up_sums() -> None:
    exprs = {panel["title"]: panel["targets"][0]["expr"] for panel in panels()}
    assert exprs["Instances polled"].startswith("count(htap_up{")
    assert exprs["Instances up"].startswith("sum(htap_up{")


def test_no_time_series_panel_shows_a_topk_per_step() -> None:
    """topk in a range query picks ten series at every step: more than ten over the range. A time
    series may only use a topk fixed over the range (`@ end()`)."""
    for panel in panels():
        if panel["type"] != "timeseries":
            continue
        for target in panel["targets"]:
            for match in re.finditer(r"topk\(", target["expr"]):
                assert "@ end()" in target["expr"][match.end():], panel["title"]


def test_the_panels_the_issue_asks_for() -> None:
    exprs = {panel["title"]: " ".join(t["expr"] for t in panel["targets"]) for panel in panels()}
    wanted = {
        "Up by instance": "htap_up", "Poll errors by reason": "htap_poll_errors_total",
        "Sessions by instance": "htap_sessions{", "Sessions by state": "htap_sessions_by_state",
        "Sessions by command": "htap_sessions_by_command", "Sessions by user": "htap_sessions_by_user",
        "Top users now": "htap_sessions_by_user", "Top databases now": "htap_sessions_by_database",
        "Longest session per command": "htap_session_max_duration_seconds",
        "Active session durations": "htap_active_session_duration_seconds_bucket",
        "API requests by code": "htap_api_requests_total", "API error ratio": "htap_api_requests_total",
        "API latency": "htap_api_request_duration_seconds_bucket",
        "Exporter CPU": "process_cpu_seconds_total", "Exporter memory": "process_resident_memory_bytes",
        "Config reload": "htap_config_last_reload_successful",
        "Longest sessions now": "htap_top_session_duration_seconds",
        "Replication tasks": "htap_replication_task_last_change_timestamp_seconds",
        "Nodes by role": "htap_nodes", "Nodes by status": "htap_node_status",
        "Running queries and the queue's limit": 'command="Query"',
        "Instances failing per collector": "htap_collector_success",
    }
    for title, metric in wanted.items():
        assert metric in exprs[title], title
    heatmap = next(p for p in panels() if p["type"] == "heatmap")
    assert heatmap["targets"][0]["format"] == "heatmap" and heatmap["options"]["calculate"] is False


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & taken, panel["title"]
        taken |= cells
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_provisioning_matches_the_compose_mounts() -> None:
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in grafana["volumes"] if volume.startswith("./"))
    assert mounts["./grafana/dashboards"] == "/var/lib/grafana/dashboards"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "htap-exporter.yml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    source = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    scrape = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape   # so $__rate_interval covers four scrapes
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/var/lib/grafana/dashboards/" + DASHBOARD.name
    assert re.fullmatch(r"[a-z0-9-]+", dashboard()["uid"])


def test_the_collectors_tables_are_instant_tables_with_their_columns() -> None:
    """The task table shows stage, progress, normal and last change; the longest sessions table the
    top-session labels as columns; both from instant queries, merged per series."""
    by_title = {panel["title"]: panel for panel in panels()}
    for title in ("Replication tasks", "Longest sessions now", "Nodes", "Query queue rules"):
        panel = by_title[title]
        assert panel["type"] == "table", title
        assert all(t["instant"] and not t["range"] and t["format"] == "table" for t in panel["targets"]), title
        assert [x["id"] for x in panel["transformations"]][0] == "merge", title

    def columns(title: str) -> set[str]:
        organize = next(x for x in by_title[title]["transformations"] if x["id"] == "organize")
        return set(organize["options"]["renameByName"].values())

    assert {"Task", "Stage", "Progress", "Normal", "Unchanged for"} <= columns("Replication tasks")
    assert {"Session", "User", "Database", "Command", "Running for"} <= columns("Longest sessions now")
    assert {"Role", "Status"} <= columns("Nodes")
    queue = " ".join(t["expr"] for t in by_title["Running queries and the queue's limit"]["targets"])
    assert "htap_sessions_by_command" in queue and "htap_query_queue_concurrency_limit" in queue
    # Every shown column that holds a value has a unit.
    for title in ("Replication tasks", "Longest sessions now", "Query queue rules"):
        overridden = {o["matcher"]["options"] for o in by_title[title]["fieldConfig"]["overrides"]}
        organize = next(x for x in by_title[title]["transformations"] if x["id"] == "organize")
        values = {v for k, v in organize["options"]["renameByName"].items() if k.startswith("Value")}
        assert values and values <= overridden, title
