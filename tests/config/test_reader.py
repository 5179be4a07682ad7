"""The strict YAML reader shared by the config and the web config: one parser, one key-path walk,
each file's own wording."""

from __future__ import annotations

from pathlib import Path

import pytest

from htap_exporter.config import ConfigError, parse_config
from htap_exporter.config.reader import Reader, join, load_yaml
from htap_exporter.web.webconfig import parse_web_config


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="cfg.yaml")
    return str(caught.value)


def web_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_web_config(text, file="web.yml", base_dir=Path("."))
    return str(caught.value)


def test_both_files_refuse_a_key_given_twice_with_its_line() -> None:
    assert config_error("poll: {}\npoll: {}\n") == "cfg.yaml: line 2 column 1: duplicate key 'poll'"
    assert web_error("rate_limit: {}\nrate_limit: {}\n") == "web.yml: line 2 column 1: duplicate key 'rate_limit'"


def test_each_file_keeps_its_wording() -> None:
    assert config_error("pol: {}\n") == "cfg.yaml: pol: unknown key (allowed: collectors, metrics, poll, projects)"
    assert web_error("tls: {}\n") == ("web.yml: tls: unknown key (known: basic_auth_users, http_server_config,"
                                      " rate_limit, tls_server_config)")
    assert config_error("1: x\n") == "cfg.yaml: keys must be strings, got 1"
    assert web_error("1: x\n") == "web.yml: keys must be strings, not int"
    assert config_error("[a]\n") == "cfg.yaml: must be a mapping, got a list"
    assert web_error("[a]\n") == "web.yml: must be a mapping"


def test_the_reader_names_the_key_path() -> None:
    assert join("", "poll") == "poll"
    assert join("projects", 0) == "projects[0]"
    assert join("projects[0]", "auth") == "projects[0].auth"
    with pytest.raises(ConfigError) as caught:
        Reader("f.yaml").mapping(load_yaml("a: {b: 1}\n", "f.yaml")["a"], "a", {"c"})
    assert str(caught.value) == "f.yaml: a.b: unknown key (allowed: c)"
    with pytest.raises(ConfigError, match=r"^f\.yaml: unreadable YAML: RecursionError$"):
        load_yaml("[" * 100_000, "f.yaml")
