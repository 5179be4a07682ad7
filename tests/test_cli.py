"""CLI pieces that need no running exporter: flag validation and log formatting."""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from htap_exporter import __version__
from htap_exporter.cli import parse_listen_address
from htap_exporter.logs import JsonFormatter, LogfmtFormatter
from tests.commands import run_cli


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("htap_exporter.runtime.scheduler", logging.WARNING, __file__, 1, message, None, None)


def test_logfmt_escapes_what_a_server_could_smuggle_into_a_message() -> None:
    line = LogfmtFormatter().format(record('error_msg=\'x\r\nts=forged level=error\x1b[31m "q"\''))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.endswith('msg="error_msg=\'x\\r\\nts=forged level=error\\u001b[31m \\"q\\"\'"')
    assert " level=warn " in line


def test_json_log_lines_are_one_object_each() -> None:
    document = json.loads(JsonFormatter().format(record("line one\nline two")))
    assert document["msg"] == "line one\nline two" and document["level"] == "warn"


@pytest.mark.parametrize("address, expected", [
    (":9978", (None, 9978)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9978", ("::1", 9978)),
])
def test_listen_addresses(address: str, expected: tuple[str | None, int]) -> None:
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize("flags, message", [
    (["--web.telemetry-path", "/-/ready"], "--web.telemetry-path '/-/ready': must be a plain path"),
    (["--web.telemetry-path", "/m{"], "--web.telemetry-path '/m{': must be a plain path"),
    (["--web.listen-address", "localhost"], "--web.listen-address 'localhost': expected [HOST]:PORT"),
])
def test_bad_flags_exit_1_with_one_line(flags: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "htap_exporter", "--demo", *flags], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_version_names_the_version_the_git_revision_python_and_the_platform(tmp_path) -> None:
    # Run from this checkout (an editable install): the revision is the checkout's own commit.
    found = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), "rev-parse", "HEAD"],
                           capture_output=True, text=True)
    commit = found.stdout.strip() if found.returncode == 0 else "unknown"
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == [
        f"htap-exporter, version {__version__} (revision: {commit})",
        f"  python version:   {platform.python_version()} ({platform.python_implementation()})",
        f"  platform:         {sys.platform}/{platform.machine()}",
    ]
