"""The `discovery:` block of a project: defaults, every key, and errors that name the key path."""

from __future__ import annotations

import pytest

from htap_exporter.config import DEFAULT_SKIP_STATUSES, ConfigError, DiscoveryConfig, parse_config

PID = "054e292c9880d4992f02c0196d3ea468"
PID2 = "1234567890abcdefABCDEF1234567890"
IID = "af315b8e6aaa41799bd9a31f2de15abcin17"


def project(discovery: str, *, project_id: str = PID, instances: str | None = None) -> str:
    listed = f"    instances: {instances}\n" if instances is not None else ""
    return (f"  - project_id: {project_id}\n    region: cn-north-4\n    auth: {{type: token, token: abcdefgh}}\n"
            f"{listed}    discovery:\n{discovery}")


def parse(text: str):
    return parse_config(text, file="cfg.yaml", env={})


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        parse(text)
    return str(raised.value)


def test_enabled_alone_needs_no_instances_and_takes_the_defaults():
    config = parse("projects:\n" + project("      enabled: true\n"))
    [only] = config.projects
    assert only.instances == ()
    assert only.discovery == DiscoveryConfig(enabled=True)
    assert only.discovery.refresh_interval == 300.0
    assert only.discovery.skip_frozen is True
    assert only.discovery.skip_statuses == DEFAULT_SKIP_STATUSES == {"creating", "createfail", "deleting", "deleted"}
    assert "discovery: refresh_interval=300s include='.*' exclude=''" in config.summary()
    assert config.summary().endswith("OK: 1 project(s), 0 instance(s), discovery in 1 project(s)")


def test_every_key():
    config = parse("projects:\n" + project(
        "      enabled: yes\n      refresh_interval: 90s\n      include: 'orders-.*|billing'\n"
        "      exclude: '.*-test'\n      skip_frozen: false\n      skip_statuses: [Creating, REBOOTING]\n",
        instances=f"[{IID}]"))
    discovery = config.projects[0].discovery
    assert discovery == DiscoveryConfig(enabled=True, refresh_interval=90.0, include="orders-.*|billing",
                                        exclude=".*-test", skip_frozen=False,
                                        skip_statuses=frozenset({"creating", "rebooting"}))
    assert config.projects[0].instances[0].id == IID


def test_disabled_discovery_is_none_and_still_needs_instances():
    config = parse("projects:\n" + project("      enabled: false\n      include: x\n", instances="[]"))
    assert config.projects[0].discovery is None
    assert error_of("projects:\n" + project("      enabled: false\n")) == (
        "cfg.yaml: projects[0]: missing instances (a list of HTAP instances to poll, or discovery.enabled: true)")


@pytest.mark.parametrize("name,wanted", [
    ("orders-htap", True), ("billing", True), ("orders-htap-test", False), ("billing-2", False),
    ("my-orders-htap", False),  # anchored, like Prometheus relabeling
])
def test_include_and_exclude_match_the_whole_name(name, wanted):
    discovery = DiscoveryConfig(enabled=True, include="orders-.*|billing", exclude=".*-test")
    assert discovery.wants(name) is wanted


def test_empty_exclude_excludes_nothing():
    assert DiscoveryConfig(enabled=True).wants("")


@pytest.mark.parametrize("block,message", [
    ("      enabled: maybe\n", "projects[0].discovery.enabled: must be true or false, got 'maybe'"),
    ("      enabled: true\n      refresh_interval: soon\n",
     "projects[0].discovery.refresh_interval: invalid duration 'soon': use a number of seconds or units ms, s, m, h"),
    ("      enabled: true\n      refresh_interval: 5ms\n",
     "projects[0].discovery.refresh_interval: must be at least 1s, got 0.005s"),
    ("      enabled: true\n      include: 'orders-(\'\n",
     "projects[0].discovery.include: invalid regular expression: missing ), unterminated subpattern at position 7"),
    ("      enabled: true\n      exclude: [a]\n",
     "projects[0].discovery.exclude: must be a regular expression (a string), got a list"),
    ("      enabled: true\n      skip_frozen: often\n",
     "projects[0].discovery.skip_frozen: must be true or false, got 'often'"),
    ("      enabled: true\n      skip_statuses: creating\n",
     "projects[0].discovery.skip_statuses: must be a list, got a string"),
    ("      enabled: true\n      skip_statuses: [creating, '']\n",
     "projects[0].discovery.skip_statuses[1]: must not be empty"),
    ("      enabled: true\n      refresh: 1m\n",
     "projects[0].discovery.refresh: unknown key (allowed: enabled, exclude, include, refresh_interval,"
     " skip_frozen, skip_statuses)"),
    ("      [enabled]\n", "projects[0].discovery: must be a mapping, got a list"),
])
def test_errors_name_the_key_path(block, message):
    assert error_of("projects:\n" + project(block)) == "cfg.yaml: " + message


def test_one_discovering_entry_per_project():
    text = "projects:\n" + project("      enabled: true\n") + project("      enabled: true\n", instances="[]")
    assert error_of(text) == (
        f"cfg.yaml: projects[1].discovery.enabled: project {PID} already has discovery enabled at projects[0]:"
        " one discovering entry per project")
    # Two projects, each discovering: fine; and a listing entry beside a discovering one of the same project.
    parse("projects:\n" + project("      enabled: true\n") + project("      enabled: true\n", project_id=PID2))
    parse("projects:\n" + project("      enabled: true\n") + project("      enabled: false\n", instances=f"[{IID}]"))
