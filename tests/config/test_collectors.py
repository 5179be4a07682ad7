"""The `collectors:` section and an instance's `taurus_instance_id`: defaults, every key, the
--config.check line, and errors that name the file, the key path and the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from htap_exporter.config import (CollectorsConfig, ConfigError, InstanceConfig, NodesConfig, QueryQueueConfig,
                             ReplicationConfig, TopSessionsConfig, parse_config)

PID = "054e292c9880d4992f02c0196d3ea468"
IID = "af315b8e6aaa41799bd9a31f2de15abcin17"
TID = "0123456789abcdef0123456789abcdefin07"

PROJECT = f"projects:\n  - project_id: {PID}\n    region: cn-north-4\n    auth: {{type: token, token: abcdefgh}}\n" \
          f"    instances: [{IID}]\n"

DESIGN_SECTION = """
collectors:
  top_sessions:            # from the session list itself: no extra API call
    enabled: false
    count: 5               # the N longest-running non-idle sessions per instance, 1..20
    min_duration: 60s      # only sessions running at least this long
    sql: none              # none | digest | fingerprint (what of sql_statement is exported)
  replication:             # ListStarRocksDataReplications
    enabled: false
    interval: 1m
    max_tasks: 100         # per-task series for at most this many tasks (abnormal first, then by name)
  nodes:                   # ListInstanceNode (roles) + ListStarrocksInstanceInfo (health)
    enabled: false
    interval: 5m
  query_queue:             # ShowHtapQueryQueuesRule
    enabled: false
    interval: 10m
"""

EVERY_KEY = """
collectors:
  top_sessions: {enabled: true, count: 20, min_duration: 1m30s, sql: fingerprint}
  replication: {enabled: true, interval: 15s, max_tasks: 7}
  nodes: {enabled: yes, interval: 2m}
  query_queue: {enabled: "true", interval: 1h}
"""


def parse(text: str):
    return parse_config(text, file="cfg.yaml", env={})


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        parse(text)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_absent_section_means_every_collector_off():
    config = parse(PROJECT)
    assert config.collectors == CollectorsConfig()
    assert config.collectors.enabled() == ()
    assert config.collectors == CollectorsConfig(
        top_sessions=TopSessionsConfig(enabled=False, count=5, min_duration=60.0, sql="none"),
        replication=ReplicationConfig(enabled=False, interval=60.0, max_tasks=100),
        nodes=NodesConfig(enabled=False, interval=300.0),
        query_queue=QueryQueueConfig(enabled=False, interval=600.0))


def test_design_example_is_the_defaults():
    assert parse(DESIGN_SECTION + PROJECT).collectors == CollectorsConfig()


@pytest.mark.parametrize("section", ["collectors:\n", "collectors: {}\n",
                                     "collectors: {replication: , nodes: {}, query_queue: {}, top_sessions: {}}\n"])
def test_empty_sections_mean_defaults(section):
    assert parse(section + PROJECT).collectors == CollectorsConfig()


def test_every_key():
    collectors = parse(EVERY_KEY + PROJECT).collectors
    assert collectors == CollectorsConfig(
        top_sessions=TopSessionsConfig(enabled=True, count=20, min_duration=90.0, sql="fingerprint"),
        replication=ReplicationConfig(enabled=True, interval=15.0, max_tasks=7),
        nodes=NodesConfig(enabled=True, interval=120.0),
        query_queue=QueryQueueConfig(enabled=True, interval=3600.0))
    assert collectors.enabled() == ("top_sessions", "replication", "nodes", "query_queue")


def test_enabled_alone_keeps_the_other_defaults():
    collectors = parse("collectors: {nodes: {enabled: true}}\n" + PROJECT).collectors
    assert collectors.nodes == NodesConfig(enabled=True, interval=300.0)
    assert collectors.enabled() == ("nodes",)


def test_an_interval_may_be_shorter_than_the_session_poll():
    config = parse("poll: {interval: 1m}\ncollectors: {replication: {enabled: true, interval: 1s}}\n" + PROJECT)
    assert config.collectors.replication.interval == 1.0


@pytest.mark.parametrize("value, seconds", [("0", 0.0), ("0s", 0.0), (0, 0.0), ("500ms", 0.5), (10, 10.0),
                                            ("2h", 7200.0)])
def test_min_duration_may_be_zero(value, seconds):
    config = parse(f"collectors: {{top_sessions: {{min_duration: {value!r}}}}}\n" + PROJECT)
    assert config.collectors.top_sessions.min_duration == seconds


def test_summary_lists_the_enabled_collectors():
    assert "\ncollectors: sessions\n" in parse(PROJECT).summary()
    summary = parse(EVERY_KEY + PROJECT).summary()
    assert ("\ncollectors: sessions top_sessions(count=20 min_duration=90s sql=fingerprint)"
            " replication(interval=15s max_tasks=7) nodes(interval=120s) query_queue(interval=3600s)\n") in summary
    only = parse("collectors: {query_queue: {enabled: true}, replication: {enabled: false}}\n" + PROJECT)
    assert "\ncollectors: sessions query_queue(interval=600s)\n" in only.summary()


def test_taurus_instance_id():
    config = parse(PROJECT.replace(f"[{IID}]", f"[{{id: {IID}, name: orders, taurus_instance_id: {TID}}}]"))
    assert config.projects[0].instances == (InstanceConfig(id=IID, name="orders", taurus_instance_id=TID),)
    assert f"  instance: {IID} name=orders taurus_instance_id={TID}\n" in config.summary()
    assert parse(PROJECT).projects[0].instances[0].taurus_instance_id is None
    assert "taurus_instance_id" not in parse(PROJECT).summary()


@pytest.mark.parametrize("text, message", [
    ("collectors: [replication]\n", "cfg.yaml: collectors: must be a mapping, got a list"),
    ("collectors: {replicaton: {enabled: true}}\n",
     "cfg.yaml: collectors.replicaton: unknown key (allowed: nodes, query_queue, replication, top_sessions)"),
    ("collectors: {sessions: {enabled: true}}\n",
     "cfg.yaml: collectors.sessions: unknown key (allowed: nodes, query_queue, replication, top_sessions)"),
    ("collectors: {replication: {enabled: true, intervall: 1m}}\n",
     "cfg.yaml: collectors.replication.intervall: unknown key (allowed: enabled, interval, max_tasks)"),
    ("collectors: {nodes: {max_tasks: 5}}\n",
     "cfg.yaml: collectors.nodes.max_tasks: unknown key (allowed: enabled, interval)"),
    ("collectors: {query_queue: {enable: true}}\n",
     "cfg.yaml: collectors.query_queue.enable: unknown key (allowed: enabled, interval)"),
    ("collectors: {top_sessions: {interval: 1m}}\n",
     "cfg.yaml: collectors.top_sessions.interval: unknown key (allowed: count, enabled, min_duration, sql)"),
    ("collectors: {nodes: true}\n", "cfg.yaml: collectors.nodes: must be a mapping, got a boolean"),
    ("collectors: {nodes: {enabled: maybe}}\n",
     "cfg.yaml: collectors.nodes.enabled: must be true or false, got 'maybe'"),
    ("collectors: {replication: {interval: 0s}}\n",
     "cfg.yaml: collectors.replication.interval: must be a positive duration"),
    ("collectors: {replication: {interval: 500ms}}\n",
     "cfg.yaml: collectors.replication.interval: must be at least 1s, got 0.5s"),
    ("collectors: {nodes: {interval: 5 minutes}}\n",
     "cfg.yaml: collectors.nodes.interval: invalid duration '5 minutes': use a number of seconds or units ms, s, m, h"),
    ("collectors: {query_queue: {interval: [1m]}}\n",
     "cfg.yaml: collectors.query_queue.interval: must be a duration such as 30s, 500ms or 2m"),
    ("collectors: {replication: {max_tasks: 0}}\n",
     "cfg.yaml: collectors.replication.max_tasks: must be between 1 and 1000, got 0"),
    ("collectors: {replication: {max_tasks: 1001}}\n",
     "cfg.yaml: collectors.replication.max_tasks: must be between 1 and 1000, got 1001"),
    ("collectors: {replication: {max_tasks: many}}\n",
     "cfg.yaml: collectors.replication.max_tasks: must be an integer, got 'many'"),
    ("collectors: {top_sessions: {count: 21}}\n",
     "cfg.yaml: collectors.top_sessions.count: must be between 1 and 20, got 21"),
    ("collectors: {top_sessions: {count: 0}}\n",
     "cfg.yaml: collectors.top_sessions.count: must be between 1 and 20, got 0"),
    ("collectors: {top_sessions: {sql: full}}\n",
     "cfg.yaml: collectors.top_sessions.sql: must be one of none, digest, fingerprint, got 'full'"),
    ("collectors: {top_sessions: {sql: Digest}}\n",
     "cfg.yaml: collectors.top_sessions.sql: must be one of none, digest, fingerprint, got 'Digest'"),
    ("collectors: {top_sessions: {min_duration: -5s}}\n",
     "cfg.yaml: collectors.top_sessions.min_duration: invalid duration '-5s': use a number of seconds or units ms,"
     " s, m, h"),
    ("collectors: {top_sessions: {min_duration: -5}}\n",
     "cfg.yaml: collectors.top_sessions.min_duration: must be a positive duration"),
])
def test_collector_errors_name_the_key_path(text, message):
    assert error_of(text + PROJECT) == message


@pytest.mark.parametrize("value, shown", [
    ("af315b8e6aaa41799bd9a31f2de15abcin17", "af315b8e6aaa41799bd9a31f2de15abcin17"),  # the HTAP id itself
    ("0123456789abcdef0123456789abcdefin7", "0123456789abcdef0123456789abcdefin7"),
    ("0123456789abcdef0123456789abcde-in07", "0123456789abcdef0123456789abcde-in07"),
])
def test_bad_taurus_instance_id(value, shown):
    text = PROJECT.replace(f"[{IID}]", f"[{{id: {IID}, taurus_instance_id: '{value}'}}]")
    assert error_of(text) == ("cfg.yaml: projects[0].instances[0].taurus_instance_id: must be a TaurusDB instance id"
                              f" (36 letters or digits ending in in07), got '{shown}'")


def test_taurus_instance_id_must_be_a_string():
    text = PROJECT.replace(f"[{IID}]", f"[{{id: {IID}, taurus_instance_id: [x]}}]")
    assert error_of(text) == "cfg.yaml: projects[0].instances[0].taurus_instance_id: must be a string, got a list"


def test_cli_config_check_lists_collectors_and_refuses_a_bad_one(tmp_path: Path):
    good = tmp_path / "good.yaml"
    good.write_text("collectors: {replication: {enabled: true}, nodes: {enabled: true}}\n" + PROJECT)
    result = subprocess.run([sys.executable, "-m", "htap_exporter", "--config.file", str(good), "--config.check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "collectors: sessions replication(interval=60s max_tasks=100) nodes(interval=300s)" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("collectors: {nodes: {interval: 10ms}}\n" + PROJECT)
    result = subprocess.run([sys.executable, "-m", "htap_exporter", "--config.file", str(bad), "--config.check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith(
        f"{bad}: collectors.nodes.interval: must be at least 1s, got 0.01s")
    assert "Traceback" not in result.stderr


def test_the_example_config_shows_every_collector_key_at_its_default():
    text = (Path(__file__).resolve().parents[2] / "config.example.yaml").read_text()
    config = parse_config(text, file="config.example.yaml",
                          env={"HW_ACCESS_KEY": "AK123456", "HW_SECRET_KEY": "SK123456"})
    assert config.collectors == CollectorsConfig()
    section = text.split("\ncollectors:", 1)[1].split("\nprojects:", 1)[0]
    for key in ("top_sessions", "replication", "nodes", "query_queue", "count", "min_duration", "sql", "interval",
                "max_tasks"):
        assert f" {key}:" in section
