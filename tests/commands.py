"""`python -m htap_exporter ARGS` run to completion, for tests of the command line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

# A command that hangs (a FIFO, /dev/zero) must fail the test, not the suite.
CLI_TIMEOUT = 20.0


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """In a clean environment (PATH and LANG only, plus `env`)."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, "-m", "htap_exporter", *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60)


async def run_cli_async(*args: str, cwd: Path | None = None,
                        env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """In this process's environment plus `env`, without blocking the event loop: (exit code, stdout,
    stderr); killed if it hangs."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "htap_exporter", *args, cwd=cwd, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"htap-exporter {' '.join(args)} did not finish within {CLI_TIMEOUT:g}s") from None
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
