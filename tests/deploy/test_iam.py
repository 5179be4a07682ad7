"""deploy/iam: the least-privilege custom policy, and the table in docs/deploy.md that explains it."""

from __future__ import annotations

import json
import re

from tests.deploy.tools import DEPLOY, DOCS, ROOT

POLICY = DEPLOY / "iam" / "htap-exporter-readonly.json"
# What DeleteHtapProcessList (killing a session) needs: the exporter never calls it.
WRITE_ACTION = "gaussdbformysql:instance:modify"
# Verbs of Huawei Cloud actions that change something.
WRITE_VERBS = re.compile(r"(?i):(create|delete|modify|update|set|put|add|remove|reset|restart|start|stop|"
                         r"change|upgrade|resize|bind|unbind|switch|kill|enable|disable)")


def readme_section() -> str:
    """The IAM policy section of docs/deploy.md (the README links there)."""
    text = (DOCS / "deploy.md").read_text(encoding="utf-8")
    start = text.index("\n## IAM policy\n")
    end = text.find("\n#", start + 1)
    return text[start:end if end != -1 else len(text)]


def readme_table() -> dict[str, list[str]]:
    """action -> the features the table says need it."""
    table: dict[str, list[str]] = {}
    for row in re.findall(r"^\|(.+)\|$", readme_section(), flags=re.M):
        feature, api, action = (cell.strip() for cell in row.split("|"))
        match = re.fullmatch(r"`(gaussdbformysql:[A-Za-z]+:[A-Za-z]+)`", action)
        if match:
            table.setdefault(match.group(1), []).append(feature)
    return table


def test_the_policy_is_a_custom_policy_of_read_actions_only() -> None:
    policy = json.loads(POLICY.read_text(encoding="utf-8"))
    assert set(policy) == {"Version", "Statement"} and policy["Version"] == "1.1"
    (statement,) = policy["Statement"]
    assert set(statement) == {"Effect", "Action"} and statement["Effect"] == "Allow"
    actions = statement["Action"]
    assert len(actions) == len(set(actions))
    for action in actions:
        assert re.fullmatch(r"gaussdbformysql:[A-Za-z]+:[A-Za-z]+", action), action   # no wildcard
        assert not WRITE_VERBS.search(action), action
    assert WRITE_ACTION not in actions


def test_the_policy_and_the_readme_table_name_the_same_actions() -> None:
    actions = json.loads(POLICY.read_text(encoding="utf-8"))["Statement"][0]["Action"]
    table = readme_table()
    assert set(table) == set(actions)
    # The session list and discovery are in it, whatever collectors are turned on.
    features = " ".join(feature for features in table.values() for feature in features)
    assert "session list" in features and "discovery" in features


def test_the_readme_says_which_action_stays_out() -> None:
    section = " ".join(readme_section().split())
    assert f"`{WRITE_ACTION}`" in section and "DeleteHtapProcessList" in section
    assert "deploy/iam/htap-exporter-readonly.json" in section


def test_the_write_verbs_catch_a_write_action() -> None:
    assert WRITE_VERBS.search(WRITE_ACTION)
    assert not WRITE_VERBS.search("gaussdbformysql:log:getSlowLogs")


def test_the_readme_names_the_policy_and_links_the_table() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "deploy/iam/htap-exporter-readonly.json" in readme and f"`{WRITE_ACTION}`" in readme
    assert "(docs/deploy.md#iam-policy)" in readme
