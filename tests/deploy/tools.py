"""The deploy/ checks' shared pieces: where the files are, the external tools, PromQL names."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "htap-exporter.rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "htap-exporter.rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "htap-exporter.json"
COMPOSE = DEPLOY / "docker-compose.yml"
KUBERNETES = DEPLOY / "kubernetes"
# Series that Prometheus makes itself; every other name must be in the exporter's output.
PROMETHEUS_SERIES = frozenset({"up"})


def require(tool: str, where: str | None = None) -> str:
    """The tool's path: from this interpreter's environment (the deploy group) or PATH (Debian);
    `where` says where it comes from (by default: the deploy group, or Debian's prometheus packages).

    Missing, it skips a developer's run but fails CI (HTAP_REQUIRE_PROMTOOL=1), so no check is lost there.
    """
    beside = Path(sys.executable).parent / tool
    path = str(beside) if beside.exists() else shutil.which(tool)
    if path is None:
        if where is None:
            where = "the deploy group" if tool in ("hadolint", "check-jsonschema", "kubernetes-validate") else \
                "Debian package " + ("prometheus-alertmanager" if tool == "amtool" else "prometheus")
        if os.environ.get("HTAP_REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"{tool} is required here ({where})")
        pytest.skip(f"{tool} not installed ({where})")
    return path


def require_unshare(flags: str, what: str) -> str:
    """`unshare` able to make the namespaces `flags` asks for (e.g. "-rn"): skips a developer's run
    without them, fails CI (HTAP_REQUIRE_PROMTOOL=1)."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, flags, "true"]).returncode != 0:
        if os.environ.get("HTAP_REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"unshare (util-linux) with {what} is required here")
        pytest.skip(f"no network namespaces here (unshare {flags})")
    return unshare


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                      "group_right", "offset", "bool", "inf", "nan", "atan2"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(r"[0-9][0-9A-Za-z_.]*|[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, keywords or label names)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)    # label matchers (their strings are gone already)
    text = re.sub(r"\[[^\]]*\]", " ", text)   # ranges and subqueries
    text = _GROUPING.sub(" ", text)           # by (...), on (...), group_left (...)
    names = set()
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token[0].isdigit() or match.group(1) or token.lower() in KEYWORDS:
            continue   # a number or duration, a function call, a keyword
        names.add(token)
    return names


def exported_names(exposition: str) -> set[str]:
    """Sample names in a text exposition (`_bucket`, `_gcount`, `_total`... as written)."""
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in exposition.splitlines()
            if line and not line.startswith("#")}


# The documentation: README.md and docs/*.md, their headings' anchors and their relative links. ----

DOCS = ROOT / "docs"


def documents() -> list[Path]:
    """README.md first, then docs/*.md by name."""
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def without_code(markdown: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M))


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes for a document's headings outside code blocks: the heading's text
    in lower case, every character but letters, digits, `_`, `-` and spaces dropped, each space a
    dash; a heading met again gets `-1`, `-2`, ..."""
    anchors: set[str] = set()
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    for heading in re.findall(r"^#{1,6} (.+?)#*$", text, flags=re.M):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # a link's text only
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        unique, n = anchor, 0
        while unique in anchors:
            n += 1
            unique = f"{anchor}-{n}"
        anchors.add(unique)
    return anchors


def relative_links(markdown: str) -> list[str]:
    """The targets of the inline links `[text](target)` outside code, but for absolute URLs."""
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", without_code(markdown))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]
