"""The documentation's own scrape configs (README.md and docs/) against the alert rules: a healthy
exporter scraped the way they say fires no alert at all, and every scrape config uses the job the
rules match."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import RULES, ROOT, documents, require, rules, run

HOURS = 2   # long enough for every `for:` (15m at most) and the 1 h surge baseline


def scrape_configs() -> list[dict[str, Any]]:
    """Every `scrape_configs` job in the yaml blocks of README.md, then of docs/*.md, in order."""
    text = "\n".join(page.read_text(encoding="utf-8") for page in documents())
    jobs = []
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        document = yaml.safe_load(block)
        if isinstance(document, dict) and "scrape_configs" in document:
            jobs += document["scrape_configs"]
    return jobs


def healthy_series(job: str, targets: list[str]) -> list[dict[str, str]]:
    """What a healthy exporter gives: up 1 at every target, two instances per target polled fine."""
    minutes = HOURS * 60
    series = []
    for t, target in enumerate(targets):
        labels = f'job="{job}", instance="{target}"'
        series += [
            {"series": f"up{{{labels}}}", "values": f"1x{minutes}"},
            {"series": f"htap_config_last_reload_successful{{{labels}}}", "values": f"1x{minutes}"},
            # Discovery succeeds every minute: its timestamp follows the clock.
            {"series": f'htap_discovery_last_success_timestamp_seconds{{{labels}, project_id="p{t}"}}',
             "values": f"0+60x{minutes}"},
        ]
        for i in range(2):
            instance = f'{labels}, instance_id="{t}{i}00000000000000000000000000000in17", instance_name="htap-{t}-{i}"'
            series += [
                {"series": f"htap_up{{{instance}}}", "values": f"1x{minutes}"},
                {"series": f'htap_instance_info{{{instance}, project_id="p{t}", region="cn-north-4"}}',
                 "values": f"1x{minutes}"},
                {"series": f"htap_sessions{{{instance}}}", "values": f"40x{minutes}"},
                {"series": f'htap_sessions_by_state{{{instance}, state="ERR"}}', "values": f"0x{minutes}"},
                {"series": f'htap_session_max_duration_seconds{{{instance}, command="Query"}}',
                 "values": f"12x{minutes}"},
                {"series": f'htap_poll_errors_total{{{instance}, reason="auth"}}', "values": f"0x{minutes}"},
                {"series": f'htap_poll_errors_total{{{instance}, reason="throttled"}}', "values": f"0x{minutes}"},
            ]
    return series


def promtool_quiet_test(tmp_path: Path, job: str, targets: list[str]) -> Any:
    """promtool's unit test: no alert at any point of HOURS of a healthy exporter."""
    alerts = sorted(rule["alert"] for rule in rules() if "alert" in rule)
    checks = [{"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": []}
              for minute in range(0, HOURS * 60 + 1, 10) for alert in alerts]
    test = {"rule_files": [str(RULES)], "evaluation_interval": "1m",
            "tests": [{"name": f"healthy exporter scraped as job {job}", "interval": "1m",
                       "input_series": healthy_series(job, targets), "alert_rule_test": checks}]}
    (tmp_path / "quiet.test.yml").write_text(yaml.safe_dump(test, sort_keys=False), encoding="utf-8")
    return run([require("promtool"), "test", "rules", "quiet.test.yml"], cwd=tmp_path)


def test_the_readme_has_scrape_configs_and_all_use_the_rules_job() -> None:
    jobs = scrape_configs()
    assert len(jobs) >= 3   # install (README), TLS (docs/security.md), sharded (docs/configuration.md)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "scrape_configs:\n  - job_name: htap-exporter\n" in readme
    assert {job["job_name"] for job in jobs} == {"htap-exporter"}
    assert 'job="htap-exporter"' in RULES.read_text(encoding="utf-8")


@pytest.mark.parametrize("index", range(3))
def test_a_healthy_exporter_scraped_as_the_readme_says_fires_nothing(tmp_path: Path, index: int) -> None:
    job = scrape_configs()[index]
    targets = [target for static in job["static_configs"] for target in static["targets"]]
    result = promtool_quiet_test(tmp_path, job["job_name"], targets)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_same_check_pages_under_another_job_name(tmp_path: Path) -> None:
    """The check can fail: scraped as `htap`, the healthy exporter is "absent" to the rules."""
    result = promtool_quiet_test(tmp_path, "htap", ["exporter-host:9978"])
    assert result.returncode != 0
    assert "alertname: HtapExporterAbsent" in result.stdout + result.stderr
