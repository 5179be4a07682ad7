"""deploy/prometheus and deploy/alertmanager, checked by Prometheus' and Alertmanager's own tools."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.deploy.tools import DEPLOY, DOCS, RULES, RULES_TEST, github_anchors, load_yaml, metric_names, require, rules, run

# What every alert must carry for the people who receive it.
SEVERITIES = {"critical", "warning"}


def test_promtool_check_rules() -> None:
    result = run([require("promtool"), "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run([require("promtool"), "test", "rules", RULES_TEST.name], cwd=RULES_TEST.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The same tests against rules whose thresholds moved: they notice."""
    text = RULES.read_text(encoding="utf-8").replace("> 1800", "> 3000").replace("== 0\n", "== 2\n")
    (tmp_path / RULES.name).write_text(text, encoding="utf-8")
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    result = run([require("promtool"), "test", "rules", RULES_TEST.name], cwd=tmp_path)
    assert result.returncode != 0
    for alert in ("HtapLongRunningQuery", "HtapExporterDown", "HtapInstancePollFailing"):
        assert f"alertname: {alert}," in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(RULES_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == alerts, f"never tested firing: {alerts - fired}"
    assert quiet == alerts, f"never tested quiet: {alerts - quiet}"


def test_every_recording_rule_is_tested_or_used_by_a_tested_alert() -> None:
    records = {rule["record"] for rule in rules() if "record" in rule}
    used = set()
    for rule in rules():
        if "alert" in rule:
            used |= metric_names(rule["expr"])
    tested = {check["expr"] for case in load_yaml(RULES_TEST)["tests"] for check in case.get("promql_expr_test", [])}
    for record in records:
        assert record in used or record in tested, record


def test_alerts_carry_what_their_receivers_need() -> None:
    for rule in rules():
        if "alert" not in rule:
            continue
        name = rule["alert"]
        assert re.fullmatch(r"Htap[A-Za-z]+", name), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert "{{ $value" in annotations["description"], f"{name}: description without the value"
        # Per-instance alerts name the instance; project- or target-wide ones name what they are about.
        about = "instance_name" if "instance_name" in annotations["summary"] else None
        assert about or re.search(r"\$labels\.(instance|project_id)\b", annotations["description"]) \
            or name == "HtapExporterAbsent", name
        if about:
            assert "$labels.instance_name" in annotations["description"], name
        # A condition that must hold a while, so one bad poll or scrape does not page anyone.
        assert rule.get("for"), f"{name} has no for:"


def test_promtool_check_config_of_the_compose_prometheus() -> None:
    config = DEPLOY / "prometheus" / "prometheus.yml"
    # Relative rule_files resolve against the config's folder, as inside the container.
    assert load_yaml(config)["rule_files"] == [RULES.name]
    result = run([require("promtool"), "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    jobs = [job["job_name"] for job in load_yaml(config)["scrape_configs"]]
    assert "htap-exporter" in jobs   # the job the rules match


def test_amtool_check_config() -> None:
    result = run([require("amtool"), "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_runbook_url_is_a_heading_of_the_runbooks_page() -> None:
    runbooks = (DOCS / "runbooks.md").read_text(encoding="utf-8")
    anchors = github_anchors(runbooks)
    bases = set()
    for rule in rules():
        if "alert" not in rule:
            continue
        base, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        bases.add(base)
        assert anchor == rule["alert"].lower() and anchor in anchors, rule["alert"]
        # The guidance is in docs/runbooks.md, under the alert's own heading.
        section = runbooks[runbooks.index(f"\n## {rule['alert']}\n"):]
        assert len(section.split("\n## ")[1]) > 200, rule["alert"]
    (base,) = bases
    assert base.startswith("https://") and base.endswith("/docs/runbooks.md")


def test_github_anchors() -> None:
    assert github_anchors("# A b\n```\n# not\n```\n## Securing the endpoints: `--web.config.file`\n") == \
        {"a-b", "securing-the-endpoints---webconfigfile"}
    # A heading met again gets a suffix, as on GitHub.
    assert github_anchors("## Notes\n## Notes\n### Top sessions: `collectors.top_sessions`\n") == \
        {"notes", "notes-1", "top-sessions-collectorstop_sessions"}
