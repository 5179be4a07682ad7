"""htap_exporter/config/loader.py: parsing, defaults, durations, ${VAR} expansion, every validation message,
secrets never shown, and the CLI's handling of a bad or good config file."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from htap_exporter.config import (AkSkAuth, Config, ConfigError, InstanceConfig, MetricsConfig, PasswordAuth,
                             PollConfig, ProjectConfig, Secret, SecretSource, TokenAuth, expand_env,
                             load_config, parse_config, parse_duration)
from tests.commands import run_cli

PID = "054e292c9880d4992f02c0196d3ea468"
PID2 = "1234567890abcdefABCDEF1234567890"
IID = "af315b8e6aaa41799bd9a31f2de15abcin17"
IID2 = "0123456789abcdef0123456789abcdefin17"
IID3 = "ffffffffffffffffffffffffffffffffin17"

# Distinctive values: none of them may ever be printed.
SECRET_TOKEN = "TOKEN-VALUE-7f3e9a1c5b"
SECRET_PASSWORD = "PASSWORD-VALUE-2d8c4e6a0f"
SECRET_SK = "SECRETKEY-VALUE-9b1d3f5a7c"
SECRET_STS = "SECURITYTOKEN-VALUE-4e6a8c0b2d"
SECRET_AK = "ACCESSKEY-VALUE-1a2b3c4d5e"
ALL_SECRETS = (SECRET_TOKEN, SECRET_PASSWORD, SECRET_SK, SECRET_STS, SECRET_AK)

DESIGN_CONFIG = f"""
poll:
  interval: 30s          # per instance
  timeout: 10s           # per HTTP request
  concurrency: 8
metrics:
  max_users: 50
  max_databases: 50
  hosts: false
  max_hosts: 50
  idle_commands: [Sleep, Daemon]
  duration_buckets: [1, 5, 10, 30, 60, 300, 600, 1800, 3600]
projects:
  - project_id: {PID}
    region: cn-north-4
    endpoint: https://gaussdb.cn-north-4.myhuaweicloud.com
    iam_endpoint: https://iam.cn-north-4.myhuaweicloud.com
    auth:
      type: aksk
      access_key: ${{HW_ACCESS_KEY}}
      secret_key: ${{HW_SECRET_KEY}}
    instances:
      - id: {IID}
        name: orders-htap
    api_rate_limit: 0
"""

# Every key again, with values that differ from the defaults, and all three auth types.
CUSTOM_CONFIG = f"""
poll:
  interval: 1m30s
  timeout: 500ms
  concurrency: 4
metrics:
  max_users: 10
  max_databases: 20
  hosts: true
  max_hosts: 30
  idle_commands: [Sleep, Daemon, Binlog Dump]
  duration_buckets: [0.5, 2, 30]
projects:
  - project_id: {PID}
    region: cn-north-4
    endpoint: http://127.0.0.1:8080/prefix/
    iam_endpoint: http://127.0.0.1:8081
    auth:
      type: aksk
      access_key: ${{AK}}
      secret_key: ${{SK}}
      security_token: ${{STS}}
    instances:
      - id: {IID}
        name: orders-htap
      - {IID2}
    api_rate_limit: 2.5
  - project_id: {PID2}
    region: ap-southeast-1
    auth:
      type: password
      domain: acme
      username: monitor
      password: ${{PW}}
    instances:
      - id: {IID3}
  - project_id: {PID2}
    region: eu-west-101
    endpoint: https://gaussdb.eu-west-101.myhuaweicloud.com
    auth:
      type: token
      token_file: token.txt
    instances: []
"""


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def parse(text: str, env: dict[str, str] | None = None, base_dir: Path | None = None) -> Config:
    return parse_config(dedent(text), file="cfg.yaml", env={} if env is None else env, base_dir=base_dir)


def error_of(text: str, env: dict[str, str] | None = None, base_dir: Path | None = None) -> str:
    with pytest.raises(ConfigError) as raised:
        parse(text, env, base_dir)
    message = str(raised.value)
    assert "\n" not in message
    return message


def project(auth: str = "auth: {type: token, token: abcdefgh}", instances: str = f"[{IID}]",
            extra: str = "") -> str:
    """A one-project config; pieces replaced by the tests."""
    return f"projects:\n  - project_id: {PID}\n    region: cn-north-4\n    {auth}\n" \
           f"    instances: {instances}\n{extra}"


# --- valid configs -------------------------------------------------------------------------------


def test_design_example_parses_into_dataclasses():
    config = parse(DESIGN_CONFIG, env={"HW_ACCESS_KEY": "AK123456", "HW_SECRET_KEY": "SK123456"})
    assert config == Config(
        file="cfg.yaml",
        poll=PollConfig(interval=30.0, timeout=10.0, concurrency=8),
        metrics=MetricsConfig(max_users=50, max_databases=50, hosts=False, max_hosts=50,
                              idle_commands=frozenset({"Sleep", "Daemon"}),
                              duration_buckets=(1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0)),
        projects=(ProjectConfig(
            project_id=PID, region="cn-north-4",
            endpoint="https://gaussdb.cn-north-4.myhuaweicloud.com",
            iam_endpoint="https://iam.cn-north-4.myhuaweicloud.com",
            auth=AkSkAuth(access_key=SecretSource(value=Secret("AK123456")),
                          secret_key=SecretSource(value=Secret("SK123456"))),
            instances=(InstanceConfig(id=IID, name="orders-htap"),),
            api_rate_limit=0.0),),
    )
    assert config.projects[0].auth.secret_key.read() == "SK123456"
    assert config.projects[0].auth.type == "aksk"


def test_design_example_with_discovery_disabled_parses():
    text = DESIGN_CONFIG + "    discovery:\n      enabled: false\n      refresh_interval: 5m\n"
    config = parse(text, env={"HW_ACCESS_KEY": "AK123456", "HW_SECRET_KEY": "SK123456"})
    assert config.projects[0].discovery is None


def test_custom_values_for_every_key(tmp_path):
    (tmp_path / "token.txt").write_text("  tok-from-file  \n")
    env = {"AK": "AK123456", "SK": "SK123456", "STS": "STS123456", "PW": "pw123456"}
    config = parse(CUSTOM_CONFIG, env=env, base_dir=tmp_path)
    assert config.poll == PollConfig(interval=90.0, timeout=0.5, concurrency=4)
    assert config.metrics == MetricsConfig(max_users=10, max_databases=20, hosts=True, max_hosts=30,
                                           idle_commands=frozenset({"Sleep", "Daemon", "Binlog Dump"}),
                                           duration_buckets=(0.5, 2.0, 30.0))
    first, second, third = config.projects
    assert first == ProjectConfig(
        project_id=PID, region="cn-north-4", endpoint="http://127.0.0.1:8080/prefix",
        iam_endpoint="http://127.0.0.1:8081",
        auth=AkSkAuth(access_key=SecretSource(value=Secret("AK123456")),
                      secret_key=SecretSource(value=Secret("SK123456")),
                      security_token=SecretSource(value=Secret("STS123456"))),
        instances=(InstanceConfig(IID, "orders-htap"), InstanceConfig(IID2, IID2)),
        api_rate_limit=2.5)
    assert second == ProjectConfig(
        project_id=PID2, region="ap-southeast-1",
        endpoint="https://gaussdbformysql.ap-southeast-1.myhuaweicloud.com",
        iam_endpoint="https://iam.ap-southeast-1.myhuaweicloud.com",
        auth=PasswordAuth(domain="acme", username="monitor", password=SecretSource(value=Secret("pw123456"))),
        instances=(InstanceConfig(IID3, IID3),))
    assert third.auth == TokenAuth(token=SecretSource(file=tmp_path / "token.txt"))
    assert third.auth.token.read() == "tok-from-file"
    assert third.instances == ()
    assert third.endpoint == "https://gaussdb.eu-west-101.myhuaweicloud.com"
    assert config.secrets() == ["AK123456", "SK123456", "STS123456", "pw123456"]


def test_defaults():
    config = parse(project())
    assert config.poll == PollConfig(interval=30.0, timeout=10.0, concurrency=64, max_body_bytes=8 * 1024 * 1024,
                                     max_pages=200, backoff_max=None)
    assert config.poll.backoff_cap == 300.0
    assert config.metrics == MetricsConfig(max_users=50, max_databases=50, hosts=False, max_hosts=50,
                                           idle_commands=frozenset({"Sleep", "Daemon"}),
                                           duration_buckets=(1, 5, 10, 30, 60, 300, 600, 1800, 3600))
    (only,) = config.projects
    assert only.endpoint == "https://gaussdb.cn-north-4.myhuaweicloud.com"
    assert only.iam_endpoint == "https://iam.cn-north-4.myhuaweicloud.com"
    assert only.api_rate_limit == 0.0
    assert only.instances == (InstanceConfig(id=IID, name=IID),)
    assert only.auth == TokenAuth(token=SecretSource(value=Secret("abcdefgh")))


def test_empty_sections_mean_defaults():
    config = parse("poll:\nmetrics:\n" + project())
    assert config.poll == PollConfig()
    assert config.metrics == MetricsConfig()


def test_default_timeout_shrinks_to_a_short_interval():
    assert parse("poll: {interval: 5s}\n" + project()).poll == PollConfig(interval=5.0, timeout=5.0)
    assert parse("poll: {interval: 2m}\n" + project()).poll == PollConfig(interval=120.0, timeout=10.0)


def test_timeout_equal_to_interval_is_fine():
    assert parse("poll: {interval: 10s, timeout: 10s}\n" + project()).poll.timeout == 10.0


def test_backoff_cap():
    assert PollConfig(interval=10).backoff_cap == 100.0
    assert PollConfig(interval=60).backoff_cap == 300.0
    assert PollConfig(interval=600).backoff_cap == 600.0
    assert parse("poll: {backoff_max: 45s}\n" + project()).poll.backoff_cap == 45.0


def test_strings_for_numbers_and_booleans():
    config = parse('poll: {concurrency: "12"}\nmetrics: {hosts: "yes", max_users: "7"}\n'
                   + project(extra='    api_rate_limit: "1.5"\n'))
    assert config.poll.concurrency == 12
    assert config.metrics.hosts is True
    assert config.metrics.max_users == 7
    assert config.projects[0].api_rate_limit == 1.5


# --- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value, seconds", [
    ("500ms", 0.5), ("15s", 15.0), ("2m", 120.0), ("1m30s", 90.0), ("1h", 3600.0), ("1h2m3s", 3723.0),
    ("1.5s", 1.5), ("2m500ms", 120.5), (" 15s ", 15.0), ("45", 45.0), ("0.25", 0.25),
    (30, 30.0), (2.5, 2.5),
])
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value, message", [
    ("15x", "invalid duration '15x': use a number of seconds or units ms, s, m, h"),
    ("s", "invalid duration 's': use a number of seconds or units ms, s, m, h"),
    ("1m 30s", "invalid duration '1m 30s': use a number of seconds or units ms, s, m, h"),
    ("30s5", "invalid duration '30s5': use a number of seconds or units ms, s, m, h"),
    ("-5s", "invalid duration '-5s': use a number of seconds or units ms, s, m, h"),
    ("1d", "invalid duration '1d': use a number of seconds or units ms, s, m, h"),
    ("", "must be a duration such as 30s, 500ms or 2m"),
    ("   ", "must be a duration such as 30s, 500ms or 2m"),
    (True, "must be a duration such as 30s, 500ms or 2m"),
    (None, "must be a duration such as 30s, 500ms or 2m"),
    ([30], "must be a duration such as 30s, 500ms or 2m"),
    (0, "must be a positive duration"),
    ("0s", "must be a positive duration"),
    ("-5", "must be a positive duration"),
    (-1.5, "must be a positive duration"),
    ("nan", "must be a positive duration"),
    ("inf", "must be a positive duration"),
    (float("inf"), "must be a positive duration"),
])
def test_parse_duration_rejects(value, message):
    with pytest.raises(ValueError) as raised:
        parse_duration(value)
    assert str(raised.value) == message


@pytest.mark.parametrize("value, message", [
    ("15x", "cfg.yaml: poll.interval: invalid duration '15x': use a number of seconds or units ms, s, m, h"),
    ("0", "cfg.yaml: poll.interval: must be a positive duration"),
    ("true", "cfg.yaml: poll.interval: must be a duration such as 30s, 500ms or 2m"),
    ('""', "cfg.yaml: poll.interval: must not be empty"),
    ("[1]", "cfg.yaml: poll.interval: must be a duration such as 30s, 500ms or 2m"),
])
def test_bad_interval_in_config(value, message):
    assert error_of(f"poll:\n  interval: {value}\n" + project()) == message


def test_duration_from_environment():
    config = parse("poll: {interval: '${IV}', timeout: '${TO}'}\n" + project(), env={"IV": "1m", "TO": "2s"})
    assert (config.poll.interval, config.poll.timeout) == (60.0, 2.0)


# --- ${VAR} expansion ----------------------------------------------------------------------------


def test_expand_env():
    env = {"A": "alpha", "B_2": "beta"}
    assert expand_env("${A}", env) == "alpha"
    assert expand_env("x-${A}-${B_2}-y", env) == "x-alpha-beta-y"
    assert expand_env("$${A}", env) == "${A}"
    assert expand_env("$${A} ${A}", env) == "${A} alpha"
    assert expand_env("$A and ${ and $", env) == "$A and ${ and $"
    with pytest.raises(KeyError) as raised:
        expand_env("${MISSING}", env)
    assert raised.value.args == ("MISSING",)


def test_env_expansion_in_config():
    config = parse(project(auth="auth: {type: password, domain: '${DOM}', username: 'u-${USR}',"
                                " password: 'pw$${NOT_A_VAR}'}"),
                   env={"DOM": "acme", "USR": "ops"})
    auth = config.projects[0].auth
    assert isinstance(auth, PasswordAuth)
    assert (auth.domain, auth.username, auth.password.read()) == ("acme", "u-ops", "pw${NOT_A_VAR}")


def test_env_value_is_not_expanded_again():
    config = parse(project(auth="auth: {type: token, token: '${T}'}"), env={"T": "$${X}-${Y}"})
    assert config.projects[0].auth.token.read() == "$${X}-${Y}"


def test_env_expansion_for_integers():
    assert parse("poll: {concurrency: '${C}'}\n" + project(), env={"C": "3"}).poll.concurrency == 3


def test_unset_variable_names_variable_and_path():
    text = project(auth="auth: {type: aksk, access_key: '${HW_ACCESS_KEY}', secret_key: '${HW_SECRET_KEY}'}")
    assert error_of(text, env={"HW_ACCESS_KEY": "AK123456"}) == (
        "cfg.yaml: projects[0].auth.secret_key: environment variable HW_SECRET_KEY is not set")
    assert error_of(text, env={}) == (
        "cfg.yaml: projects[0].auth.access_key: environment variable HW_ACCESS_KEY is not set")


def test_unset_variable_in_instance_name():
    assert error_of(project(instances=f"[{{id: {IID}, name: '${{NAME}}'}}]")) == (
        "cfg.yaml: projects[0].instances[0].name: environment variable NAME is not set")


def test_variable_that_expands_to_nothing():
    assert error_of(project(auth="auth: {type: token, token: '${T}'}"), env={"T": "  "}) == (
        "cfg.yaml: projects[0].auth.token: must not be empty")


def test_invalid_variable_name():
    assert error_of("poll: {interval: '${1X}'}\n" + project()) == (
        "cfg.yaml: poll.interval: invalid variable name ${1X}")


def test_load_config_uses_process_environment_by_default(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text(project(auth="auth: {type: token, token: '${HTAP_TEST_TOKEN_ABC}'}"))
    monkeypatch.setenv("HTAP_TEST_TOKEN_ABC", "from-process-env")
    assert load_config(path).projects[0].auth.token.read() == "from-process-env"
    assert load_config(path, env={"HTAP_TEST_TOKEN_ABC": "given"}).projects[0].auth.token.read() == "given"


# --- every validation error, exact message -------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    # wrong types
    ("- a\n- b\n", "cfg.yaml: must be a mapping, got a list"),
    ("just text\n", "cfg.yaml: must be a mapping, got a string"),
    ("poll: [1]\n" + project(), "cfg.yaml: poll: must be a mapping, got a list"),
    ("metrics: 5\n" + project(), "cfg.yaml: metrics: must be a mapping, got an integer"),
    ("projects: {a: 1}\n", "cfg.yaml: projects: must be a list, got a mapping"),
    ("projects: [5]\n", "cfg.yaml: projects[0]: must be a mapping, got an integer"),
    ("poll: {concurrency: many}\n" + project(), "cfg.yaml: poll.concurrency: must be an integer, got 'many'"),
    ("poll: {concurrency: 1.5}\n" + project(), "cfg.yaml: poll.concurrency: must be an integer, got a number"),
    ("poll: {concurrency: true}\n" + project(), "cfg.yaml: poll.concurrency: must be an integer, got a boolean"),
    ("poll: {concurrency: 0}\n" + project(), "cfg.yaml: poll.concurrency: must be between 1 and 1000, got 0"),
    ("poll: {concurrency: 1001}\n" + project(),
     "cfg.yaml: poll.concurrency: must be between 1 and 1000, got 1001"),
    ("metrics: {max_users: 0}\n" + project(), "cfg.yaml: metrics.max_users: must be >= 1, got 0"),
    ("metrics: {max_databases: [1]}\n" + project(),
     "cfg.yaml: metrics.max_databases: must be an integer, got a list"),
    ("metrics: {hosts: maybe}\n" + project(), "cfg.yaml: metrics.hosts: must be true or false, got 'maybe'"),
    ("metrics: {hosts: 2}\n" + project(), "cfg.yaml: metrics.hosts: must be true or false, got 2"),
    ("metrics: {idle_commands: Sleep}\n" + project(),
     "cfg.yaml: metrics.idle_commands: must be a list, got a string"),
    ("metrics: {idle_commands: [Sleep, {a: 1}]}\n" + project(),
     "cfg.yaml: metrics.idle_commands[1]: must be a string, got a mapping"),
    ("metrics: {duration_buckets: [1, x]}\n" + project(),
     "cfg.yaml: metrics.duration_buckets[1]: must be a number, got 'x'"),
    ("metrics: {duration_buckets: [-1, 1]}\n" + project(),
     "cfg.yaml: metrics.duration_buckets[0]: must be >= 0, got -1"),
    ("metrics: {duration_buckets: [1, .inf]}\n" + project(),
     "cfg.yaml: metrics.duration_buckets[1]: must be a number, got inf"),
    ("metrics: {duration_buckets: [.nan]}\n" + project(),
     "cfg.yaml: metrics.duration_buckets[0]: must be a number, got nan"),
    ("metrics: {duration_buckets: [true]}\n" + project(),
     "cfg.yaml: metrics.duration_buckets[0]: must be a number, got a boolean"),
    (project(extra="    api_rate_limit: -1\n"), "cfg.yaml: projects[0].api_rate_limit: must be >= 0, got -1"),
    (project(extra="    api_rate_limit: fast\n"),
     "cfg.yaml: projects[0].api_rate_limit: must be a number, got 'fast'"),
    (project(instances="abc"), "cfg.yaml: projects[0].instances: must be a list, got a string"),
    (project(instances="[[1]]"), "cfg.yaml: projects[0].instances[0]: must be a mapping, got a list"),
    (project(instances=f"[{{id: {IID}, name: [x]}}]"),
     "cfg.yaml: projects[0].instances[0].name: must be a string, got a list"),
    (project(auth="auth: token"),
     "cfg.yaml: projects[0].auth: must be a mapping with a type (aksk, password or token), got a string"),
    (project(auth="auth:"),
     "cfg.yaml: projects[0].auth: must be a mapping with a type (aksk, password or token), got nothing"),
    (project(auth="auth: {type: token, token: [a]}"), "cfg.yaml: projects[0].auth.token: must be a string, got a list"),
    (f"projects:\n  - project_id: {PID}\n    region: [cn]\n    auth: {{type: token, token: t}}\n"
     f"    instances: [{IID}]\n", "cfg.yaml: projects[0].region: must be a string, got a list"),
    # unknown keys at several depths
    ("pol: {}\n" + project(), "cfg.yaml: pol: unknown key (allowed: collectors, metrics, poll, projects)"),
    ("poll: {intervall: 5s}\n" + project(),
     "cfg.yaml: poll.intervall: unknown key (allowed: backoff_max, concurrency, interval, max_body_bytes,"
     " max_pages, timeout)"),
    ("metrics: {max_user: 5}\n" + project(),
     "cfg.yaml: metrics.max_user: unknown key (allowed: duration_buckets, hosts, idle_commands, max_databases,"
     " max_hosts, max_label_length, max_users)"),
    (project(extra="    regoin: x\n"),
     "cfg.yaml: projects[0].regoin: unknown key (allowed: allow_http, api_rate_limit, auth, ca_file, discovery,"
     " endpoint, iam_endpoint, instances, project_id, region)"),
    (project(extra="    discovery: {enabled: true, refresh: 1m}\n"),
     "cfg.yaml: projects[0].discovery.refresh: unknown key (allowed: enabled, exclude, include,"
     " refresh_interval, skip_frozen, skip_statuses)"),
    (project(auth="auth: {type: aksk, access_key: a, secret: b}"),
     "cfg.yaml: projects[0].auth.secret: unknown key (allowed: access_key, access_key_file, secret_key,"
     " secret_key_file, security_token, security_token_file, type)"),
    (project(auth="auth: {type: token, token: abc, password: x}"),
     "cfg.yaml: projects[0].auth.password: unknown key (allowed: token, token_file, type)"),
    (project(auth="auth: {type: password, domain: d, username: u, password: p, token: t}"),
     "cfg.yaml: projects[0].auth.token: unknown key (allowed: domain, password, password_file, type, username)"),
    (project(instances=f"[{{id: {IID}, nmae: x}}]"),
     "cfg.yaml: projects[0].instances[0].nmae: unknown key (allowed: id, name, taurus_instance_id)"),
    ("1: x\n" + project(), "cfg.yaml: keys must be strings, got 1"),
    # missing pieces
    ("", "cfg.yaml: projects: missing: list at least one project with its instances"),
    ("poll: {}\n", "cfg.yaml: projects: missing: list at least one project with its instances"),
    ("projects: []\n", "cfg.yaml: projects: missing: list at least one project with its instances"),
    ("projects:\n  - region: cn-north-4\n", "cfg.yaml: projects[0]: missing project_id"),
    (f"projects:\n  - project_id: {PID}\n    auth: {{type: token, token: t}}\n",
     "cfg.yaml: projects[0]: missing region"),
    (f"projects:\n  - project_id: {PID}\n    region: cn-north-4\n", "cfg.yaml: projects[0]: missing auth"),
    (f"projects:\n  - project_id: {PID}\n    region: cn-north-4\n    auth: {{type: token, token: t}}\n",
     "cfg.yaml: projects[0]: missing instances (a list of HTAP instances to poll, or discovery.enabled: true)"),
    (project(instances="[{name: x}]"), "cfg.yaml: projects[0].instances[0]: missing id"),
    (project(auth="auth: {type: password, username: u, password: p}"), "cfg.yaml: projects[0].auth: missing domain"),
    (project(auth="auth: {type: password, domain: d, password: p}"), "cfg.yaml: projects[0].auth: missing username"),
    (project(auth="auth: {type: password, domain: d, username: u}"),
     "cfg.yaml: projects[0].auth: missing password (or password_file)"),
    (project(auth="auth: {type: token}"), "cfg.yaml: projects[0].auth: missing token (or token_file)"),
    (project(auth="auth: {type: aksk, secret_key: s}"),
     "cfg.yaml: projects[0].auth: missing access_key (or access_key_file)"),
    (project(auth="auth: {type: aksk, access_key: a}"),
     "cfg.yaml: projects[0].auth: missing secret_key (or secret_key_file)"),
    (project(auth="auth: {type: aksk, access_key: a, secret_key: ''}"),
     "cfg.yaml: projects[0].auth.secret_key: must not be empty"),
    (project(instances=f"[{{id: {IID}, name: '  '}}]"), "cfg.yaml: projects[0].instances[0].name: must not be empty"),
    # auth type
    (project(auth="auth: {token: abc}"), "cfg.yaml: projects[0].auth.type: missing: one of aksk, password, token"),
    (project(auth="auth: {type: '', token: abc}"),
     "cfg.yaml: projects[0].auth.type: missing: one of aksk, password, token"),
    (project(auth="auth: {type: iam, token: abc}"),
     "cfg.yaml: projects[0].auth.type: unknown auth type 'iam': use aksk, password or token"),
    (project(auth="auth: {type: Token, token: abc}"),
     "cfg.yaml: projects[0].auth.type: unknown auth type 'Token': use aksk, password or token"),
    # both inline and file
    (project(auth="auth: {type: token, token: abc, token_file: t.txt}"),
     "cfg.yaml: projects[0].auth.token: give either token or token_file, not both"),
    (project(auth="auth: {type: password, domain: d, username: u, password: p, password_file: p.txt}"),
     "cfg.yaml: projects[0].auth.password: give either password or password_file, not both"),
    (project(auth="auth: {type: aksk, access_key: a, secret_key: s, security_token: x,"
                  " security_token_file: x.txt}"),
     "cfg.yaml: projects[0].auth.security_token: give either security_token or security_token_file, not both"),
    # ids
    (project().replace(PID, "054e292c"),
     "cfg.yaml: projects[0].project_id: must be 32 letters or digits, got '054e292c'"),
    (project().replace(PID, PID[:-1] + "-"),
     f"cfg.yaml: projects[0].project_id: must be 32 letters or digits, got '{PID[:-1]}-'"),
    (project().replace(PID, PID + "0"),
     f"cfg.yaml: projects[0].project_id: must be 32 letters or digits, got '{PID}0'"),
    (project(instances="[af315b8e6aaa41799bd9a31f2de15abcin14]"),
     "cfg.yaml: projects[0].instances[0].id: must be an HTAP instance id (36 letters or digits ending in in17),"
     " got 'af315b8e6aaa41799bd9a31f2de15abcin14'"),
    (project(instances=f"[{IID2}, {{id: {IID[1:]}}}]"),
     "cfg.yaml: projects[0].instances[1].id: must be an HTAP instance id (36 letters or digits ending in in17),"
     f" got '{IID[1:]}'"),
    (project(instances=f"[{{id: {IID}, name: a}}, {IID2}, {{id: {IID}, name: b}}]"),
     f"cfg.yaml: projects[0].instances[2].id: instance {IID} is already listed at projects[0].instances[0]"),
    (project() + f"  - project_id: {PID2}\n    region: cn-north-4\n    auth: {{type: token, token: t}}\n"
                 f"    instances: [{IID2}, {IID}]\n",
     f"cfg.yaml: projects[1].instances[1].id: instance {IID} is already listed at projects[0].instances[0]"),
    (project().replace("cn-north-4", "North4"),
     "cfg.yaml: projects[0].region: not a region name like cn-north-4, got 'North4'"),
    # URLs
    (project(extra="    endpoint: ftp://gaussdb.example.com\n"),
     "cfg.yaml: projects[0].endpoint: must be an http(s) URL, got 'ftp://gaussdb.example.com'"),
    (project(extra="    endpoint: gaussdb.example.com\n"),
     "cfg.yaml: projects[0].endpoint: must be an http(s) URL, got 'gaussdb.example.com'"),
    (project(extra="    endpoint: https://gaussdb.example.com/a b\n"),
     "cfg.yaml: projects[0].endpoint: must be an http(s) URL, got 'https://gaussdb.example.com/a b'"),
    (project(extra="    iam_endpoint: https://iam.example.com?x=1\n"),
     "cfg.yaml: projects[0].iam_endpoint: must be an http(s) URL, got 'https://iam.example.com?x=1'"),
    (project(extra="    iam_endpoint: 'https://'\n"),
     "cfg.yaml: projects[0].iam_endpoint: must be an http(s) URL, got 'https:'"),
    # timeout vs interval
    ("poll: {interval: 10s, timeout: 11s}\n" + project(),
     "cfg.yaml: poll.timeout: must not exceed poll.interval (10s)"),
    ("poll: {interval: 500ms, timeout: 1s}\n" + project(),
     "cfg.yaml: poll.timeout: must not exceed poll.interval (0.5s)"),
    ("poll: {timeout: 31s}\n" + project(), "cfg.yaml: poll.timeout: must not exceed poll.interval (30s)"),
    # buckets
    ("metrics: {duration_buckets: [1, 5, 5]}\n" + project(),
     "cfg.yaml: metrics.duration_buckets[2]: bucket bounds must be strictly increasing"),
    ("metrics: {duration_buckets: [10, 1]}\n" + project(),
     "cfg.yaml: metrics.duration_buckets[1]: bucket bounds must be strictly increasing"),
    ("metrics: {duration_buckets: []}\n" + project(),
     "cfg.yaml: metrics.duration_buckets: must list at least one bucket bound"),
    ("metrics: {duration_buckets: 5}\n" + project(),
     "cfg.yaml: metrics.duration_buckets: must be a list, got an integer"),
    # invalid YAML, with line and column
    ("poll:\n  interval: 30s\n  timeout: [1, 2\nmetrics: {}\n",
     "cfg.yaml: line 4 column 8: expected ',' or ']', but got ':'"),
    ("poll:\n\tinterval: 30s\n", "cfg.yaml: line 2 column 1: found character '\\t' that cannot start any token"),
    ("poll: a: b\n", "cfg.yaml: line 1 column 8: mapping values are not allowed here"),
])
def test_validation_error_message(text, message):
    assert error_of(text) == message


def test_error_attributes():
    with pytest.raises(ConfigError) as raised:
        parse("poll: {concurrency: 0}\n" + project())
    assert (raised.value.file, raised.value.path, raised.value.message) == (
        "cfg.yaml", "poll.concurrency", "must be between 1 and 1000, got 0")


# --- secret files --------------------------------------------------------------------------------


def test_secret_file_relative_to_config_dir(tmp_path):
    (tmp_path / "sk.txt").write_text("secret-from-file\n")
    (tmp_path / "ak.txt").write_text("ak-from-file")
    config = parse(project(auth="auth: {type: aksk, access_key_file: ak.txt, secret_key_file: sk.txt}"),
                   base_dir=tmp_path)
    auth = config.projects[0].auth
    assert auth == AkSkAuth(access_key=SecretSource(file=tmp_path / "ak.txt"),
                            secret_key=SecretSource(file=tmp_path / "sk.txt"))
    assert (auth.access_key.read(), auth.secret_key.read()) == ("ak-from-file", "secret-from-file")
    # re-read on every use: a rotated secret is picked up
    (tmp_path / "sk.txt").write_text("rotated\n")
    assert auth.secret_key.read() == "rotated"
    assert config.secrets() == []


def test_load_config_resolves_secret_files_next_to_the_config(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "token.txt").write_text("tok123456")
    path = tmp_path / "conf" / "config.yaml"
    path.write_text(project(auth="auth: {type: token, token_file: token.txt}"))
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("conf/config.yaml"), env={})
    assert config.projects[0].auth.token.file == tmp_path / "conf" / "token.txt"
    assert config.file == "conf/config.yaml"


def test_missing_secret_file(tmp_path):
    assert error_of(project(auth="auth: {type: token, token_file: nope.txt}"), base_dir=tmp_path) == (
        f"cfg.yaml: projects[0].auth.token_file: cannot read {tmp_path / 'nope.txt'}: No such file or directory")


def test_secret_file_is_a_directory(tmp_path):
    (tmp_path / "dir").mkdir()
    assert error_of(project(auth=f"auth: {{type: token, token_file: {tmp_path / 'dir'}}}")) == (
        f"cfg.yaml: projects[0].auth.token_file: {tmp_path / 'dir'} is not a regular file (a directory)")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_secret_file(tmp_path):
    path = tmp_path / "sk.txt"
    path.write_text("secret")
    path.chmod(0)
    assert error_of(project(auth="auth: {type: aksk, access_key: a, secret_key_file: sk.txt}"),
                    base_dir=tmp_path) == (
        f"cfg.yaml: projects[0].auth.secret_key_file: cannot read {path}: Permission denied")


@pytest.mark.parametrize("content", [b"", b"  \n\t\n"])
def test_empty_secret_file(tmp_path, content):
    (tmp_path / "pw.txt").write_bytes(content)
    text = project(auth="auth: {type: password, domain: d, username: u, password_file: pw.txt}")
    assert error_of(text, base_dir=tmp_path) == (
        f"cfg.yaml: projects[0].auth.password_file: {tmp_path / 'pw.txt'} is empty")


def test_secret_file_not_utf8(tmp_path):
    (tmp_path / "st.txt").write_bytes(b"\xff\xfe\x00bad")
    text = project(auth="auth: {type: aksk, access_key: a, secret_key: s, security_token_file: st.txt}")
    assert error_of(text, base_dir=tmp_path) == (
        f"cfg.yaml: projects[0].auth.security_token_file: {tmp_path / 'st.txt'} is not UTF-8 text")


# --- files ---------------------------------------------------------------------------------------


def test_missing_config_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert str(raised.value) == f"{path}: file not found"


def test_config_file_is_a_directory(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path, env={})
    assert str(raised.value) == f"{tmp_path}: not a regular file (a directory)"


def test_config_file_not_utf8(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"poll: \xff\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert str(raised.value) == f"{path}: not UTF-8 text"


def test_error_names_the_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("poll: {concurrency: 0}\n" + project())
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert str(raised.value) == f"{path}: poll.concurrency: must be between 1 and 1000, got 0"


# --- secrets never shown -------------------------------------------------------------------------

SECRETS_ENV = {"AK": SECRET_AK, "SK": SECRET_SK, "STS": SECRET_STS, "PW": SECRET_PASSWORD, "TOK": SECRET_TOKEN}
ALL_AUTH_PROJECTS = f"""
projects:
  - project_id: {PID}
    region: cn-north-4
    auth: {{type: aksk, access_key: '${{AK}}', secret_key: '${{SK}}', security_token: '${{STS}}'}}
    instances: [{IID}]
  - project_id: {PID2}
    region: cn-north-4
    auth: {{type: password, domain: acme, username: monitor, password: '${{PW}}'}}
    instances: [{IID2}]
  - project_id: {PID2}
    region: cn-east-3
    auth: {{type: token, token: '${{TOK}}'}}
    instances: [{IID3}]
"""
INLINE_AUTH_PROJECTS = (ALL_AUTH_PROJECTS.replace("'${AK}'", SECRET_AK).replace("'${SK}'", SECRET_SK)
                        .replace("'${STS}'", SECRET_STS).replace("'${PW}'", SECRET_PASSWORD)
                        .replace("'${TOK}'", SECRET_TOKEN))


def assert_no_secret(text: str) -> None:
    for secret in ALL_SECRETS:
        assert secret not in text
        assert secret[-10:] not in text


def test_summary_masks_every_secret():
    config = parse(ALL_AUTH_PROJECTS, env=SECRETS_ENV)
    assert sorted(config.secrets()) == sorted(ALL_SECRETS)
    summary = config.summary()
    assert_no_secret(summary)
    assert summary == "\n".join([
        "config file: cfg.yaml",
        "poll: interval=30s timeout=10s concurrency=64",
        "metrics: max_users=50 max_databases=50 hosts=false max_hosts=50 max_label_length=128 idle_commands=Daemon,Sleep"
        " duration_buckets=1,5,10,30,60,300,600,1800,3600",
        "collectors: sessions",
        f"projects[0]: project_id={PID} region=cn-north-4 endpoint=https://gaussdb.cn-north-4.myhuaweicloud.com"
        " iam_endpoint=https://iam.cn-north-4.myhuaweicloud.com api_rate_limit=0",
        "  auth: aksk (access_key=******** secret_key=******** security_token=********)",
        f"  instance: {IID} name={IID}",
        f"projects[1]: project_id={PID2} region=cn-north-4 endpoint=https://gaussdb.cn-north-4.myhuaweicloud.com"
        " iam_endpoint=https://iam.cn-north-4.myhuaweicloud.com api_rate_limit=0",
        "  auth: password (domain=acme username=monitor password=********)",
        f"  instance: {IID2} name={IID2}",
        f"projects[2]: project_id={PID2} region=cn-east-3 endpoint=https://gaussdb.cn-east-3.myhuaweicloud.com"
        " iam_endpoint=https://iam.cn-east-3.myhuaweicloud.com api_rate_limit=0",
        "  auth: token (token=********)",
        f"  instance: {IID3} name={IID3}",
        "OK: 3 project(s), 3 instance(s)",
    ])


def test_summary_of_custom_config(tmp_path):
    (tmp_path / "token.txt").write_text("tok")
    config = parse(CUSTOM_CONFIG, env={"AK": "AK123456", "SK": "SK123456", "STS": "STS123456", "PW": "pw123456"},
                   base_dir=tmp_path)
    assert config.summary() == "\n".join([
        "config file: cfg.yaml",
        "poll: interval=90s timeout=0.5s concurrency=4",
        "metrics: max_users=10 max_databases=20 hosts=true max_hosts=30 max_label_length=128 idle_commands=Binlog Dump,Daemon,Sleep"
        " duration_buckets=0.5,2,30",
        "collectors: sessions",
        f"projects[0]: project_id={PID} region=cn-north-4 endpoint=http://127.0.0.1:8080/prefix"
        " iam_endpoint=http://127.0.0.1:8081 api_rate_limit=2.5",
        "  auth: aksk (access_key=******** secret_key=******** security_token=********)",
        f"  instance: {IID} name=orders-htap",
        f"  instance: {IID2} name={IID2}",
        f"projects[1]: project_id={PID2} region=ap-southeast-1"
        " endpoint=https://gaussdbformysql.ap-southeast-1.myhuaweicloud.com"
        " iam_endpoint=https://iam.ap-southeast-1.myhuaweicloud.com api_rate_limit=0",
        "  auth: password (domain=acme username=monitor password=********)",
        f"  instance: {IID3} name={IID3}",
        f"projects[2]: project_id={PID2} region=eu-west-101 endpoint=https://gaussdb.eu-west-101.myhuaweicloud.com"
        " iam_endpoint=https://iam.eu-west-101.myhuaweicloud.com api_rate_limit=0",
        f"  auth: token (token=file {tmp_path / 'token.txt'})",
        "OK: 3 project(s), 3 instance(s)",
    ])
    assert "STS123456" not in config.summary() and "pw123456" not in config.summary()


@pytest.mark.parametrize("text", [ALL_AUTH_PROJECTS, INLINE_AUTH_PROJECTS])
def test_repr_and_str_mask_every_secret(text):
    config = parse(text, env=SECRETS_ENV)
    for shown in (repr(config), str(config), repr(config.projects), f"{config.projects[0].auth}",
                  str(config.projects[1].auth.password), repr(config.projects[2].auth.token.value)):
        assert_no_secret(shown)
    assert "Secret('********')" in repr(config)
    assert config.projects[2].auth.token.describe() == "********"


@pytest.mark.parametrize("extra, message", [
    ("poll: {interval: 10s, timeout: 11s}\n", "cfg.yaml: poll.timeout: must not exceed poll.interval (10s)"),
    ("metrics: {duration_buckets: [2, 1]}\n",
     "cfg.yaml: metrics.duration_buckets[1]: bucket bounds must be strictly increasing"),
    ("poll: {bogus: 1}\n", "cfg.yaml: poll.bogus: unknown key (allowed: backoff_max, concurrency, interval,"
                           " max_body_bytes, max_pages, timeout)"),
])
def test_errors_after_secrets_were_read_do_not_show_them(extra, message):
    for text in (ALL_AUTH_PROJECTS, INLINE_AUTH_PROJECTS):
        assert error_of(extra + text, env=SECRETS_ENV) == message


@pytest.mark.parametrize("auth, message", [
    # an error in the very section that holds the secret
    (f"{{type: aksk, access_key: {SECRET_AK}, secret_key: {SECRET_SK}, security_token: {SECRET_STS}, x: 1}}",
     "cfg.yaml: projects[0].auth.x: unknown key (allowed: access_key, access_key_file, secret_key,"
     " secret_key_file, security_token, security_token_file, type)"),
    (f"{{type: aksk, access_key: {SECRET_AK}, secret_key: {SECRET_SK}, secret_key_file: f.txt}}",
     "cfg.yaml: projects[0].auth.secret_key: give either secret_key or secret_key_file, not both"),
    (f"{{type: password, username: u, password: {SECRET_PASSWORD}}}", "cfg.yaml: projects[0].auth: missing domain"),
    (f"{{type: password, domain: d, username: u, password: {SECRET_PASSWORD}, password_file: p.txt}}",
     "cfg.yaml: projects[0].auth.password: give either password or password_file, not both"),
    (f"{{type: token, token: {SECRET_TOKEN}, token_file: t.txt}}",
     "cfg.yaml: projects[0].auth.token: give either token or token_file, not both"),
    (f"{{type: tokn, token: {SECRET_TOKEN}}}",
     "cfg.yaml: projects[0].auth.type: unknown auth type 'tokn': use aksk, password or token"),
    (f"{{token: {SECRET_TOKEN}}}", "cfg.yaml: projects[0].auth.type: missing: one of aksk, password, token"),
    (f"{{type: token, token: [{SECRET_TOKEN}]}}", "cfg.yaml: projects[0].auth.token: must be a string, got a list"),
    (f"{{type: token, token: {{{SECRET_TOKEN}: 1}}}}",
     "cfg.yaml: projects[0].auth.token: must be a string, got a mapping"),
    (f"{{type: aksk, access_key: a, secret_key: {SECRET_SK}, security_token: '${{STS_UNSET}}'}}",
     "cfg.yaml: projects[0].auth.security_token: environment variable STS_UNSET is not set"),
])
def test_errors_in_the_auth_section_do_not_show_secrets(auth, message):
    assert error_of(project(auth=f"auth: {auth}")) == message


def test_yaml_error_next_to_a_secret_does_not_show_it():
    text = f'projects:\n  - auth: {{type: token, token: "{SECRET_TOKEN}\\q"}}\n'
    message = error_of(text)
    assert_no_secret(message)
    assert message == "cfg.yaml: line 2 column 56: found unknown escape character 'q'"


# --- the CLI -------------------------------------------------------------------------------------


@pytest.mark.parametrize("content, expected", [
    (None, "{path}: file not found"),
    ("poll:\n\tinterval: 30s\n", "{path}: line 2 column 1: found character '\\t' that cannot start any token"),
    ("poll: {concurrency: 0}\n" + project(), "{path}: poll.concurrency: must be between 1 and 1000, got 0"),
    (project(auth="auth: {type: aksk, access_key: '${HW_AK}', secret_key: '${HW_SK}'}"),
     "{path}: projects[0].auth.secret_key: environment variable HW_SK is not set"),
    (project(auth=f"auth: {{type: token, token: {SECRET_TOKEN}, token_file: t.txt}}"),
     "{path}: projects[0].auth.token: give either token or token_file, not both"),
])
def test_cli_bad_config_exits_1_with_one_line(tmp_path, content, expected):
    path = tmp_path / "config.yaml"
    if content is not None:
        path.write_text(content)
    for extra in ([], ["--config.check"]):
        result = run_cli("--config.file", str(path), *extra, cwd=tmp_path, env={"HW_AK": SECRET_AK})
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == "htap-exporter: " + expected.format(path=path) + "\n"
        assert "Traceback" not in result.stderr
        assert_no_secret(result.stderr)


def test_cli_config_check_prints_masked_summary(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(dedent(ALL_AUTH_PROJECTS))
    result = run_cli("--config.file", str(path), "--config.check", cwd=tmp_path, env=SECRETS_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    expected = load_config(path, env=SECRETS_ENV).summary()
    assert result.stdout == expected + "\n"
    assert "  auth: aksk (access_key=******** secret_key=******** security_token=********)\n" in result.stdout
    assert result.stdout.endswith("OK: 3 project(s), 3 instance(s)\n")
    assert_no_secret(result.stdout)


def test_cli_default_config_file_is_config_yaml_in_cwd(tmp_path):
    result = run_cli("--config.check", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", "htap-exporter: config.yaml: file not found (give one with --config.file PATH,"
               " or try --demo for the built-in simulator)\n")


def test_endpoint_with_credentials_is_refused_without_echoing_them() -> None:
    text = """
projects:
  - project_id: 054e292c9880d4992f02c0196d3ea468
    region: cn-north-4
    endpoint: https://admin:hunter2-secret@gaussdb.example.com
    auth: {type: token, token: abcdefgh}
    instances: [af315b8e6aaa41799bd9a31f2de15abcin17]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="c.yaml", env={})
    assert str(caught.value) == "c.yaml: projects[0].endpoint: must not hold credentials (user:password@): use auth"
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("auth, message", [
    ("auth: {type: token, token: 'two words'}", "projects[0].auth.token: must not contain spaces"),
    ("auth: {type: aksk, access_key: 'AK,X', secret_key: s}", "projects[0].auth.access_key: must not contain ',' or '='"),
    ("auth: {type: aksk, access_key: AK, secret_key: \"s\\x01k\"}",
     "projects[0].auth.secret_key: must not contain control characters (a line break?)"),
])
def test_secrets_that_could_never_be_sent_are_refused(auth: str, message: str) -> None:
    assert error_of(project(auth=auth)) == f"cfg.yaml: {message}"


def test_password_may_hold_spaces() -> None:
    config = parse(project(auth="auth: {type: password, domain: d, username: u, password: 'correct horse'}"))
    assert config.projects[0].auth.password.read() == "correct horse"


def test_token_file_with_two_lines_is_refused(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("first-line-token\nsecond-line\n")
    assert error_of(project(auth="auth: {type: token, token_file: token.txt}"), base_dir=tmp_path) == \
        f"cfg.yaml: projects[0].auth.token_file: {tmp_path / 'token.txt'} must not contain control characters (a line break?)"


def test_duplicate_key_is_an_error_not_a_silent_override() -> None:
    text = project() + "    instances: []\n"
    assert error_of(text) == "cfg.yaml: line 6 column 5: duplicate key 'instances'"


def test_endpoint_with_an_impossible_port() -> None:
    text = project(extra="    endpoint: http://127.0.0.1:99999\n")
    assert error_of(text) == \
        "cfg.yaml: projects[0].endpoint: must be an http(s) URL with a valid port, got 'http://127.0.0.1:99999'"


@pytest.mark.parametrize("yaml_text", ["poll: {concurrency: " + "9" * 5000 + "}\n", "[" * 100000])
def test_pathological_yaml_is_a_config_error(yaml_text: str) -> None:
    assert error_of(yaml_text).startswith("cfg.yaml: ")


def test_backoff_cap_below_the_interval_is_refused() -> None:
    assert error_of(project(extra="poll: {interval: 30s, backoff_max: 1s}\n")) == \
        "cfg.yaml: poll.backoff_max: must not be shorter than poll.interval (30s)"


# --- hardening: regions, unexpanded variables, clear text, CA bundles --------------------------------

PASSWORD_AUTH = "auth: {type: password, domain: d, username: u, password: pw-1234567}"


@pytest.mark.parametrize("text, expected", [
    (project().replace("cn-north-4", "cn-noth-4"), "unknown region 'cn-noth-4' (did you mean cn-north-4?); known: "),
    (project().replace("cn-north-4", "xx-base-1"), "unknown region 'xx-base-1'; known: af-south-1, "),
    (project(PASSWORD_AUTH, extra="    endpoint: https://gaussdb.example.com\n").replace("cn-north-4", "xx-new-1"),
     "for another region set iam_endpoint"),
])
def test_unknown_region_without_endpoint(text, expected):
    message = error_of(text)
    assert message.startswith("cfg.yaml: projects[0].region: ") and expected in message, message


def test_unknown_region_with_explicit_endpoints():
    text = project(PASSWORD_AUTH, extra="    endpoint: https://g.example.com\n    iam_endpoint: https://i.example.com\n")
    (only,) = parse(text.replace("cn-north-4", "xx-new-1")).projects
    assert (only.endpoint, only.iam_endpoint) == ("https://g.example.com", "https://i.example.com")


@pytest.mark.parametrize("value, hint", [
    ("$HW_TOKEN", "write ${HW_TOKEN} to read it"),
    (" $HW_TOKEN ", "write ${HW_TOKEN} to read it"),
    ("$ecret_pw", "write ${NAME} to read it"),  # not echoed: it may be a real password
])
def test_secret_like_an_unexpanded_variable(value, hint):
    message = error_of(project(f"auth: {{type: token, token: '{value}'}}"))
    assert message.startswith("cfg.yaml: projects[0].auth.token: looks like an unexpanded environment variable: ")
    assert hint in message and (value.strip() not in message or value.strip() == "$HW_TOKEN"), message


def test_dollar_inside_a_secret_is_fine():
    (only,) = parse(project("auth: {type: token, token: 'ab$cd$ef'}")).projects
    assert only.auth.token.read() == "ab$cd$ef"  # type: ignore[union-attr]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://127.8.9.10", "http://[::1]:9000",
                                 "http://localhost:80", "http://sim.localhost"])
def test_http_to_loopback_is_fine(url):
    (only,) = parse(project(extra=f"    endpoint: {url}\n")).projects
    assert only.endpoint == url and only.cleartext_endpoints() == []


@pytest.mark.parametrize("url", ["http://10.0.0.5", "http://gaussdb.example.com", "http://[2001:db8::1]:80",
                                 "http://127.0.0.1.example.com"])
def test_http_to_a_remote_host_needs_allow_http(url):
    assert error_of(project(extra=f"    endpoint: {url}\n")) == (
        "cfg.yaml: projects[0].endpoint: http:// to a non-loopback host sends credentials in clear text: use https,"
        " or set projects[0].allow_http: true")
    (only,) = parse(project(extra=f"    endpoint: {url}\n    allow_http: true\n")).projects
    assert only.allow_http and only.cleartext_endpoints() == [("endpoint", url)]


def test_http_iam_endpoint_matters_only_with_password_auth():
    extra = "    iam_endpoint: http://iam.example.com\n"
    parse(project(extra=extra))  # token auth never calls IAM
    assert error_of(project(PASSWORD_AUTH, extra=extra)).startswith(
        "cfg.yaml: projects[0].iam_endpoint: http:// to a non-loopback host")


def test_ca_file(tmp_path):
    trustme = pytest.importorskip("trustme")
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (only,) = parse(project(extra="    ca_file: ca.pem\n"), base_dir=tmp_path).projects
    assert only.ca_file == tmp_path / "ca.pem"
    assert f"ca_file={tmp_path / 'ca.pem'}" in Config(file="cfg.yaml", projects=(only,)).summary()
    assert error_of(project(extra="    ca_file: nope.pem\n"), base_dir=tmp_path) == (
        f"cfg.yaml: projects[0].ca_file: cannot read {tmp_path / 'nope.pem'}: No such file or directory")
    (tmp_path / "junk.pem").write_bytes(b"\xff\xfe junk")
    assert error_of(project(extra="    ca_file: junk.pem\n"), base_dir=tmp_path) == (
        f"cfg.yaml: projects[0].ca_file: {tmp_path / 'junk.pem'} is not a PEM file")


def test_config_file_must_be_a_regular_file(tmp_path):
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as raised:
        load_config(fifo, env={})
    assert str(raised.value) == f"{fifo}: not a regular file (a FIFO)"
