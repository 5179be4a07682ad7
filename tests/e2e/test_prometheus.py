"""A real Prometheus server scrapes the exporter: the path every user's data takes."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.deploy.tools import RULES, rules
from tests.e2e.harness import Exporter, wait_until
from tests.e2e.prometheus import PrometheusServer, dashboard_targets, panels_without_data, scrape_config, substitute


async def test_prometheus_scrapes_the_demo(tmp_path: Path) -> None:
    async with Exporter(["--demo"]) as exporter:
        async with PrometheusServer(tmp_path, scrape_config([exporter.url])) as server:
            async def five_up() -> bool:
                return len(await server.result("htap_up == 1")) == 5

            await wait_until(five_up, timeout=60, what="Prometheus to see five instances up")
            health = await server.result('up{job="htap-exporter"}')
            assert [r["value"][1] for r in health] == ["1"]
            # The gauge histogram and the capped labels arrive as series Prometheus can query.
            assert len(await server.result('htap_active_session_duration_seconds_bucket{le="+Inf"}')) == 5
            assert len(await server.result(
                "sum by (instance_id) (htap_sessions_by_state) == on(instance_id) htap_sessions")) == 5


@pytest.mark.slow
async def test_prometheus_scrapes_through_tls_and_basic_auth(tmp_path: Path) -> None:
    """The secured scrape_configs of docs/security.md, verbatim but for paths and the port, against the web config."""
    from tests.webtls import Pki, bcrypt_hash

    pki = Pki.create(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                   f"basic_auth_users:\n  prometheus: {bcrypt_hash('scrape-secret')}\n")
    (tmp_path / "password").write_text("scrape-secret\n")
    async with Exporter(["--demo", "--web.config.file", str(web)], scheme="https") as exporter:
        target = exporter.url.removeprefix("https://")
        config = f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: htap-exporter
    scheme: https
    tls_config:
      ca_file: {pki.ca_file}
    basic_auth:
      username: prometheus
      password_file: {tmp_path / 'password'}
    static_configs:
      - targets: ['{target}']
"""
        async with PrometheusServer(tmp_path, config) as server:
            async def five_sessions() -> bool:
                return len(await server.result("htap_sessions")) == 5

            await wait_until(five_sessions, timeout=60, what="Prometheus to answer htap_sessions for five instances")
            assert [r["value"][1] for r in await server.result('up{job="htap-exporter"}')] == ["1"]
            assert all(float(r["value"][1]) > 0 for r in await server.result("htap_sessions"))


# The collectors beyond the session list: their rules and panels on a real Prometheus. -----------

# Families of the collectors beyond the session list (and their per-collector health series).
COLLECTOR_SERIES = re.compile(r"htap_(replication_|nodes\b|node_|query_queue_|top_session_|collector_)")


def collector_rules() -> list[dict[str, Any]]:
    """The alerts that read the collectors' series (HtapLongRunningQuery's description does)."""
    return [rule for rule in rules() if "alert" in rule
            and COLLECTOR_SERIES.search(rule["expr"] + rule["annotations"]["description"])]


def collector_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(title, target) for title, target in dashboard_targets() if COLLECTOR_SERIES.search(target["expr"])]


def rules_without_for(directory: Path) -> Path:
    """The shipped rules with every `for:` at 0s: the server fires each alert whose expression
    holds at its first evaluation and renders its annotations (template queries included) then."""
    text = re.sub(r"^(\s+for: )\S+$", r"\g<1>0s", RULES.read_text(encoding="utf-8"), flags=re.M)
    path = directory / RULES.name
    path.write_text(text, encoding="utf-8")
    return path


async def firing(api: PrometheusServer) -> dict[str, list[dict[str, Any]]]:
    """Alert name -> its firing alerts, as /api/v1/alerts lists them (labels and annotations)."""
    alerts = (await api.get("/api/v1/alerts"))["data"]["alerts"]
    out: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        if alert["state"] == "firing":
            out.setdefault(alert["labels"]["alertname"], []).append(alert)
    return out


async def variable_values(api: PrometheusServer) -> dict[str, list[str]]:
    """The dashboard's job, project and instance variables as Grafana resolves them (all chosen)."""
    info = await api.result("htap_instance_info")
    return {"job": sorted({s["metric"]["job"] for s in info}),
            "project": sorted({s["metric"]["project_id"] for s in info}),
            "instance": sorted({s["metric"]["instance_id"] for s in info})}


ORDERS = "aaaa0000000000000000000000000000in17"
BI = "bbbb0000000000000000000000000000in17"


def fixture_exposition(now: float) -> str:
    """What an exporter with every collector on writes for two instances: orders-htap with a task
    stuck in full sync for two hours, an abnormal task, an abnormal BE and a long query whose top
    session is known; bi-htap without an FE leader, its query_queue collector failing and its
    top-sessions collector off. The session collector's families only as far as the panels need."""
    lines = ['htap_exporter_build_info{version="0"} 1']
    project = "0123456789abcdef0123456789abcdef"

    def series(name: str, instance_id: str, value: float, **labels: str) -> None:
        instance_name = "orders-htap" if instance_id == ORDERS else "bi-htap"
        text = ",".join(f'{k}="{v}"' for k, v in
                        {"instance_id": instance_id, "instance_name": instance_name, **labels}.items())
        lines.append(f"{name}{{{text}}} {value}")

    for instance_id in (ORDERS, BI):
        series("htap_instance_info", instance_id, 1, project_id=project, region="cn-north-4")
        series("htap_up", instance_id, 1)
        series("htap_sessions_by_command", instance_id, 12, command="Query")
        series("htap_collector_success", instance_id, 1, collector="sessions")
        for role, count in (("fe-leader", 1 if instance_id == ORDERS else 0), ("fe-follower", 2),
                            ("fe-observer", 0), ("be", 3)):
            series("htap_nodes", instance_id, count, role=role)
        series("htap_collector_success", instance_id, 1, collector="nodes")
        series("htap_collector_success", instance_id, 1, collector="replication")
    series("htap_collector_success", ORDERS, 1, collector="top_sessions")
    series("htap_collector_success", ORDERS, 1, collector="query_queue")
    series("htap_collector_success", BI, 0, collector="query_queue")
    # Replication: orders_full_sync stuck in full, sales_sync incremental (steady), events_sync abnormal.
    tasks = (("orders_full_sync", "full", 0.45, 1, now - 7200), ("sales_sync", "incremental", 1.0, 1, now - 7200),
             ("events_sync", "wait", 0.0, 0, now - 30))
    for instance_id in (ORDERS, BI):
        for stage in ("wait", "full", "incremental", "paused", "cancelled", "unknown"):
            count = sum(1 for task in tasks if task[1] == stage) if instance_id == ORDERS else 0
            series("htap_replication_tasks", instance_id, count, stage=stage)
        series("htap_replication_tasks_abnormal", instance_id, 1 if instance_id == ORDERS else 0)
    for name, stage, progress, normal, changed in tasks:
        series("htap_replication_task_info", ORDERS, 1, task_name=name, source_database=name.split("_")[0],
               target_database=name.split("_")[0] + "_sr")
        series("htap_replication_task_normal", ORDERS, normal, task_name=name)
        for each in ("wait", "full", "incremental", "paused", "cancelled"):
            series("htap_replication_task_stage", ORDERS, 1 if each == stage else 0, task_name=name, stage=each)
            series("htap_replication_task_catchup_stage", ORDERS, 0, task_name=name, stage=each)
        series("htap_replication_task_progress_ratio", ORDERS, progress, task_name=name)
        series("htap_replication_task_catchup_progress_ratio", ORDERS, 0, task_name=name)
        series("htap_replication_task_last_change_timestamp_seconds", ORDERS, changed, task_name=name)
    # Nodes of orders-htap (the TaurusDB id known): be2 abnormal.
    for node, role, status in (("fe0", "fe-leader", "normal"), ("be0", "be", "normal"), ("be2", "be", "abnormal")):
        node_id, node_name = f"{node}no17", f"orders-htap-{node}"
        series("htap_node_info", ORDERS, 1, node_id=node_id, node_name=node_name, role=role)
        for each in ("normal", "abnormal", "creating", "createfail"):
            series("htap_node_status", ORDERS, 1 if each == status else 0, node_id=node_id, node_name=node_name,
                   status=each)
    for name, value in (("enabled", 1), ("concurrency_limit", 20), ("max_queued_queries", 1024),
                        ("pending_timeout_seconds", 300), ("memory_limit_ratio", 0.8), ("cpu_limit_ratio", 0)):
        series(f"htap_query_queue_{name}", ORDERS, value)
    # A Query running 40 minutes on both; only orders-htap has the top-sessions collector on.
    for instance_id in (ORDERS, BI):
        series("htap_session_max_duration_seconds", instance_id, 2400, command="Query")
    for session, user, database, seconds in (("1201", "etl", "orders", 2400), ("1187", "bi", "sales", 1900)):
        series("htap_top_session_duration_seconds", ORDERS, seconds, session_id=session, user=user,
               database=database, command="Query", state="OK")
    return "\n".join(lines) + "\n"


async def test_collector_rules_and_panels_on_a_fixture_exposition(tmp_path: Path) -> None:
    """Every collector alert and panel query on a real Prometheus scraping a known exposition: each
    alert fires for exactly the series it should, with its annotations rendered by the server
    (the long-running query names its top session only where that collector is on), and each
    panel query returns the figures the exposition implies."""
    exposition = fixture_exposition(time.time())
    app = web.Application()

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=exposition, content_type="text/plain")

    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        rules_file = rules_without_for(tmp_path)
        config = scrape_config([f"http://127.0.0.1:{port}"], rule_files=(str(rules_file),))
        async with PrometheusServer(tmp_path, config) as api:
            async def scraped() -> bool:
                return len(await api.result("htap_up")) == 2

            await wait_until(scraped, timeout=30, what="Prometheus to scrape the fixture")

            names = {rule["alert"] for rule in collector_rules()}
            assert names == {"HtapLongRunningQuery", "HtapReplicationTaskAbnormal", "HtapReplicationTaskStuck",
                             "HtapNoFeLeader", "HtapNodeAbnormal", "HtapCollectorFailing"}

            async def all_fired() -> bool:
                return names <= set(await firing(api))

            await wait_until(all_fired, timeout=30, what="the collectors' alerts to fire")
            alerts = await firing(api)

            def only(name: str, label: str) -> str:
                (alert,) = alerts[name]
                return alert["labels"][label]

            assert only("HtapReplicationTaskAbnormal", "task_name") == "events_sync"
            assert only("HtapReplicationTaskStuck", "task_name") == "orders_full_sync"
            (stuck,) = alerts["HtapReplicationTaskStuck"]
            assert "is in stage full, not incremental" in stuck["annotations"]["description"]
            assert "has not moved for 2h" in stuck["annotations"]["summary"]
            assert only("HtapNoFeLeader", "instance_id") == BI
            assert only("HtapNodeAbnormal", "node_name") == "orders-htap-be2"
            (failing,) = alerts["HtapCollectorFailing"]
            assert (failing["labels"]["instance_id"], failing["labels"]["collector"]) == (BI, "query_queue")
            long_running = {a["labels"]["instance_id"]: a["annotations"]["description"]
                            for a in alerts["HtapLongRunningQuery"]}
            assert long_running[ORDERS].endswith(
                "over the 30 minute threshold. It is session 1201 of user etl on database orders.")
            assert long_running[BI].endswith("over the 30 minute threshold.")

            # Every collector panel query answers with data, as Grafana would send it.
            values = await variable_values(api)
            assert values["instance"] == [ORDERS, BI]
            panels = collector_panels()
            assert {title for title, _ in panels} >= {
                "Longest sessions now", "Replication tasks by stage", "Abnormal replication tasks",
                "Replication progress", "Replication tasks", "Instances without an FE leader", "Nodes by role",
                "Nodes by status", "Nodes", "Running queries and the queue's limit", "Query queue rules",
                "Instances failing per collector"}
            results: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for title, target in panels:
                expr = substitute(target["expr"], values)
                answer = await api.query(expr)
                assert answer["status"] == "success", (title, expr, answer)
                assert answer["data"]["result"], f"{title}: no data from {expr}"
                results[title, target["refId"]] = answer["data"]["result"]

            def figures(title: str, ref: str, label: str) -> dict[str, float]:
                return {s["metric"].get(label, ""): float(s["value"][1]) for s in results[title, ref]}

            assert figures("Replication tasks", "A", "stage") == {"full": 1, "incremental": 1, "wait": 1}
            unchanged = figures("Replication tasks", "D", "task_name")
            assert unchanged["orders_full_sync"] > 7000 and unchanged["events_sync"] < 600
            assert figures("Replication tasks by stage", "A", "stage")["full"] == 1
            assert figures("Instances without an FE leader", "A", "") == {"": 1}
            assert figures("Nodes by role", "A", "role") == {"fe-leader": 1, "fe-follower": 4, "fe-observer": 0, "be": 6}
            assert figures("Nodes by status", "A", "status")["abnormal"] == 1
            assert figures("Nodes", "B", "node_name")["orders-htap-be2"] == 1
            assert figures("Longest sessions now", "A", "session_id") == {"1201": 2400, "1187": 1900}
            # The limit beside the running queries: 20 per BE x 3 BEs, where the rule is known.
            assert figures("Running queries and the queue's limit", "B", "instance_id") == {ORDERS: 60}
            assert figures("Instances failing per collector", "A", "collector") == {
                "sessions": 0, "nodes": 0, "replication": 0, "top_sessions": 0, "query_queue": 1}
    finally:
        await runner.cleanup()


@pytest.mark.slow
async def test_collector_rules_and_panels_on_the_demo(tmp_path: Path) -> None:
    """The demo enables every collector: each collector panel shows its data, the healthy demo
    fires neither HtapNoFeLeader nor HtapCollectorFailing, and a long-running query alert whose
    instance has top sessions for its command names one of them."""
    async with Exporter(["--demo"]) as exporter:
        rules_file = rules_without_for(tmp_path)
        config = scrape_config([exporter.url], interval="1s", rule_files=(str(rules_file),))
        async with PrometheusServer(tmp_path, config) as api:
            # The demo runs them every 15 or 30 s, spread: wait for every instance's first run of each.
            async def collectors_reported() -> bool:
                return len(await api.result('htap_collector_success{collector=~"replication|nodes|query_queue"}'
                                            " == 1")) == 15 and len(await api.result("htap_nodes")) == 5 * 4

            await wait_until(collectors_reported, timeout=90, what="every collector's first run in the demo")
            values = await variable_values(api)
            assert len(values["instance"]) == 5
            empty = await panels_without_data(api, collector_panels(), values, timeout=30)
            assert not empty, "collector panels without data in the demo:\n" + "\n".join(empty)

            # Figures the demo's instances all share: one FE leader each, every collector succeeding.
            leaders = await api.result('htap_nodes{role="fe-leader"}')
            assert [s["value"][1] for s in leaders] == ["1"] * 5
            failing = await api.result('htap_collector_success{collector!~"sessions|top_sessions"} == 0')
            assert failing == []
            # At most `count` (5 in the demo) top sessions per instance, never an idle one.
            per_instance = await api.result("count by (instance_id) (htap_top_session_duration_seconds)")
            assert per_instance and all(int(s["value"][1]) <= 5 for s in per_instance)
            assert await api.result('htap_top_session_duration_seconds{command=~"Sleep|Daemon"}') == []

            # The rules are evaluated by the server; a long query alert names its session when the
            # instance has a top session of that command (sessions of the demo run up to two hours).
            # The demo's sessions come and go between the server's evaluation and any query of ours,
            # so each description is checked against what was there within the last half minute,
            # and the "no top session, no sentence" case is left to the rules' unit test.
            # The alerts checked are those the wait saw: an evaluation since may have ended them.
            seen_alerts: dict[str, list[dict[str, Any]]] = {}

            async def named_long_query_alert() -> bool:
                alerts = await firing(api)
                if any(" It is session " in alert["annotations"]["description"]
                       for alert in alerts.get("HtapLongRunningQuery", [])):
                    seen_alerts.update(alerts)
                    return True
                return False

            await wait_until(named_long_query_alert, timeout=30, what="a long-running query alert naming its session")
            alerts = seen_alerts
            assert "HtapNoFeLeader" not in alerts and "HtapCollectorFailing" not in alerts
            named = 0
            for alert in alerts["HtapLongRunningQuery"]:
                labels = alert["labels"]
                description = alert["annotations"]["description"]
                found = re.search(r" It is session (\S+) of user (.*) on database (.*)\.$", description)
                if found is None:
                    assert description.endswith("over the 30 minute threshold."), description
                    continue
                session, user, database = found.groups()
                seen = await api.result(
                    'last_over_time(htap_top_session_duration_seconds{instance_id="%s", command="%s", '
                    'session_id="%s", user="%s", database="%s"}[30s])'
                    % (labels["instance_id"], labels["command"], session, user, database))
                assert seen, description
                named += 1
            assert named >= 1
