"""The shipped rules and dashboard against a real Prometheus scraping the running demo.

Every alert and recording rule is loaded and evaluated by the server, every dashboard query runs
with Grafana's variables substituted the way Grafana would, and every metric they name is one the
exporter really writes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.tools import DASHBOARD, PROMETHEUS_SERIES, RULES, exported_names, metric_names, rules
from tests.e2e.harness import Exporter, wait_until
from tests.e2e.prometheus import PrometheusServer, dashboard_targets, panels_without_data, scrape_config, substitute

SCRAPE = "1s"
def dashboard_variables() -> list[dict[str, Any]]:
    return [v for v in json.loads(DASHBOARD.read_text(encoding="utf-8"))["templating"]["list"] if v["type"] == "query"]



@pytest.mark.slow
async def test_rules_and_dashboard_queries_run_on_a_real_prometheus(tmp_path: Path) -> None:
    async with Exporter(["--demo"]) as exporter:
        config = scrape_config([exporter.url], job="htap-exporter", interval=SCRAPE, rule_files=(str(RULES),))
        async with PrometheusServer(tmp_path, config) as api:
            async def five_up() -> bool:
                return len(await api.result("htap_up == 1")) == 5

            await wait_until(five_up, timeout=60, what="Prometheus to see five instances up")

            # Every rule: loaded, evaluated by the server's rule manager, and healthy.
            async def all_rules_evaluated() -> bool:
                groups = (await api.get("/api/v1/rules"))["data"]["groups"]
                loaded = [rule for group in groups for rule in group["rules"]]
                return len(loaded) == len(rules()) and all(
                    r["health"] == "ok" and not r["lastEvaluation"].startswith("0001") for r in loaded)

            await wait_until(all_rules_evaluated, timeout=30, what="every rule evaluated")
            groups = (await api.get("/api/v1/rules"))["data"]["groups"]
            for rule in (r for g in groups for r in g["rules"]):
                assert rule["health"] == "ok" and not rule.get("lastError"), rule

            # Every rule's expression also answers a plain query without error; the recording
            # rules' joins match real label sets and return data.
            for rule in rules():
                answer = await api.query(rule["expr"])
                assert answer["status"] == "success", (rule, answer)
            for record in (r["record"] for r in rules() if "record" in r):
                async def recorded(name: str = record) -> bool:
                    return len(await api.result(name)) > 0
                await wait_until(recorded, timeout=30, what=f"recording rule {record}")
            throttled = await api.result('project_id:htap_poll_errors:rate5m{reason="throttled"}')
            assert [s["metric"]["project_id"] for s in throttled] == ["0123456789abcdef0123456789abcdef"]
            # Every instance's series, once the rule has been evaluated after a scrape that had all five.
            async def every_instance_recorded() -> bool:
                return len(await api.result("instance_id:htap_sessions:avg_over_time1h")) == 5
            await wait_until(every_instance_recorded, timeout=30, what="the 1 h average of all five instances")

            # Dashboard variables, resolved from the server as Grafana does (label values of a selector).
            values: dict[str, list[str]] = {}
            for variable in dashboard_variables():
                query = variable["query"]["query"]
                if query.startswith("query_result("):
                    # Grafana prints each series as `name{labels sorted} value time` and applies
                    # the variable's regex; its named group `value` is the value.
                    series = await api.result(substitute(query[len("query_result("):-1], values))
                    regex = re.compile(variable["regex"].strip("/").replace("(?<", "(?P<"))
                    lines = ["%s{%s} %s" % (s["metric"]["__name__"], ", ".join(
                        f'{k}="{v}"' for k, v in sorted(s["metric"].items()) if k != "__name__"), s["value"][1])
                        for s in series]
                    found = [m.group("value") for m in map(regex.search, lines) if m]
                    assert len(found) == len(lines) and found, (variable["name"], lines)
                    values[variable["name"]] = found
                    continue
                match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
                assert match, variable["name"]
                selector = substitute(match.group(1), values)
                answer = await api.get(f"/api/v1/label/{match.group(2)}/values", **{"match[]": selector})
                assert answer["status"] == "success" and answer["data"], (variable["name"], answer)
                values[variable["name"]] = answer["data"]
            assert len(values["instance"]) == 5 and len(values["project"]) == 1
            assert all(value.endswith("in17") for value in values["instance"])   # ids, not names

            # Every panel query: no error, and data from the demo.
            empty = await panels_without_data(api, dashboard_targets(), values, timeout=20)
            assert not empty, "panels without data:\n" + "\n".join(empty)
            # The heatmap's buckets come through as one series per le.
            buckets = await api.result(substitute(next(t["expr"] for title, t in dashboard_targets()
                                                       if title == "Active session durations"), values))
            assert len(buckets) == 10


async def test_every_metric_in_the_rules_and_dashboard_is_exported() -> None:
    async with Exporter(["--demo"]) as exporter:
        async def ready() -> bool:
            return (await exporter.get("/-/ready"))[0] == 200

        await wait_until(ready, timeout=30, what="every demo instance polled once")
        exported = exported_names(await exporter.scrape())
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    used: dict[str, str] = {}
    for rule in rules():
        for name in metric_names(rule["expr"]):
            used[name] = rule.get("alert") or rule.get("record")
    for title, target in dashboard_targets():
        for name in metric_names(substitute(target["expr"], {"job": ["j"], "project": ["p"], "instance": ["i"]})):
            used[name] = title
    for variable in dashboard_variables():
        query = variable["query"]["query"]
        selector = query[len("query_result("):-1] if query.startswith("query_result(") else \
            re.fullmatch(r"label_values\((.+), (\w+)\)", query).group(1)
        for name in metric_names(substitute(selector, {"job": ["j"], "project": ["p"]})):
            used[name] = variable["name"]
    unknown = {name: where for name, where in used.items()
               if name not in exported and name not in recorded and name not in PROMETHEUS_SERIES}
    assert not unknown, f"not in the exporter's output: {unknown}"
    assert len(used) > 15
