"""deploy/systemd: the unit passes `systemd-analyze verify`, is hardened, and its config example
reads the credentials systemd hands over."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path


from tests.deploy.tools import DEPLOY, ROOT, require, run

SYSTEMD = DEPLOY / "systemd"
UNIT = SYSTEMD / "htap-exporter.service"
INSTALLED = "/opt/htap-exporter/bin/htap-exporter"


def systemd_analyze() -> str:
    return require("systemd-analyze", "Debian package systemd")


def service() -> dict[str, list[str]]:
    """The [Service] section, every value of repeated keys kept."""
    values: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` of the unit, with ExecStart pointing at this checkout's command.

    verify reports an ExecStart binary that is not installed, and /opt/htap-exporter is where the
    deploy guide (docs/deploy.md) installs it, not where the tests run: the copy runs the test virtualenv's htap-exporter.
    """
    command = Path(sys.executable).parent / "htap-exporter"
    assert command.exists(), "the virtualenv has no htap-exporter command"
    assert f"ExecStart={INSTALLED} " in text
    copy = tmp_path / UNIT.name   # verify takes the unit's name from the file's
    copy.write_text(text.replace(f"ExecStart={INSTALLED} ", f"ExecStart={command} "), encoding="utf-8")
    return run([systemd_analyze(), "verify", str(copy)])


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    result = verify(tmp_path, UNIT.read_text(encoding="utf-8"))
    assert result.returncode == 0, result.stderr
    assert UNIT.name not in result.stdout + result.stderr, result.stdout + result.stderr


def test_systemd_analyze_verify_notices_a_misspelt_directive(tmp_path: Path) -> None:
    text = UNIT.read_text(encoding="utf-8").replace("ProtectSystem=strict", "ProtectSystem=stricter")
    result = verify(tmp_path, text)
    assert "stricter" in result.stderr


def test_the_unit_is_hardened() -> None:
    unit = service()
    expected = {"DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
                "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "RestrictSUIDSGID": "yes"}
    for key, value in expected.items():
        assert unit.get(key) == [value], key
    assert "~@privileged" in unit["SystemCallFilter"]
    # Credentials from files, through systemd's credential store; none in the environment.
    assert sorted(v.split(":")[0] for v in unit["LoadCredential"]) == ["hw_ak", "hw_sk"]
    assert not any(key == "Environment" for key in unit)
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_the_config_example_reads_the_credentials_directory(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    secret = "SKexampleSecretValue0123456789"
    (credentials / "hw_ak").write_text("AKEXAMPLE0123456789", encoding="utf-8")
    (credentials / "hw_sk").write_text(secret, encoding="utf-8")
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(credentials)}
    result = subprocess.run([sys.executable, "-m", "htap_exporter", "--config.file", str(SYSTEMD / "config.yaml"),
                             "--config.check"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"secret_key=file {credentials}/hw_sk" in result.stdout
    assert secret not in result.stdout + result.stderr
    # The unit's credential names are the files the config reads.
    names = {v.split(":")[0] for v in service()["LoadCredential"]}
    assert names == {"hw_ak", "hw_sk"}
    assert all(f"${{CREDENTIALS_DIRECTORY}}/{name}" in (SYSTEMD / "config.yaml").read_text() for name in names)


def test_the_environment_file_sets_only_the_flags_variable() -> None:
    parser = configparser.ConfigParser()
    parser.read_string("[env]\n" + (SYSTEMD / "htap-exporter.env").read_text(encoding="utf-8"))
    assert list(parser["env"]) == ["htap_exporter_args"]
    assert "$HTAP_EXPORTER_ARGS" in service()["ExecStart"][0]
