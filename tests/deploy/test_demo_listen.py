"""`htap-exporter --demo` as a newcomer runs it: on loopback only, unless --web.listen-address says
otherwise. Run in a network namespace of its own, so the default port 9978 is free whatever else
runs on the machine."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.deploy.tools import ROOT, require_unshare


def listening_addresses(*flags: str) -> list[str]:
    """Start the real command, read its log until it listens, stop it; the addresses it bound."""
    unshare = require_unshare("-rn", "network namespaces")
    process = subprocess.Popen(
        [unshare, "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
         sys.executable, "-m", "htap_exporter", "--demo", *flags],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    addresses = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "listening on" in line:
                addresses.append(line.split("address=")[1].split()[0].strip('"'))
            if "msg=polling" in line or "cannot listen" in line:
                break
        else:
            pytest.fail("the exporter stopped before it listened")
    finally:
        process.terminate()
        process.wait(timeout=30)
    return addresses


@pytest.mark.slow
def test_demo_listens_on_loopback_by_default() -> None:
    assert listening_addresses() == ["127.0.0.1:9978"]


@pytest.mark.slow
def test_demo_listens_where_the_listen_address_says() -> None:
    assert listening_addresses("--web.listen-address", ":0")[0].startswith(("0.0.0.0:", "[::]:"))


def test_the_help_says_so() -> None:
    result = subprocess.run([sys.executable, "-m", "htap_exporter", "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=30)
    assert "127.0.0.1:9978 unless --web.listen-address is given" in " ".join(result.stdout.split())
