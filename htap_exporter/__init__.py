"""htap-exporter: Prometheus metrics for the sessions of TaurusDB HTAP instances."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from pathlib import Path

# The one place the version is written: pyproject.toml reads it, the Helm chart's appVersion and the
# Dockerfile's default VERSION label repeat it (tests/deploy/test_release.py keeps them equal).
__version__ = "0.2.0"

UNKNOWN = "unknown"


@functools.cache
def revision() -> str:
    """The git commit this copy was built from, or "unknown".

    A wheel or an sdist carries it in `_revision.py`, written by setup.py when the package is built
    (from `git rev-parse HEAD` in a clone, or HTAP_EXPORTER_REVISION); a clone run in place (`pip
    install -e .`, `python -m htap_exporter` from the checkout) asks git for its current commit."""
    try:
        from htap_exporter._revision import REVISION  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        return str(REVISION) or UNKNOWN
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / ".git").exists():
        return UNKNOWN
    try:
        found = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                               text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    commit = found.stdout.strip()
    return commit if found.returncode == 0 and len(commit) in (40, 64) else UNKNOWN


def python_version() -> str:
    return platform.python_version()


def platform_name() -> str:
    """`os/machine`, as the Go exporters print GOOS/GOARCH: "linux/x86_64"."""
    return f"{sys.platform}/{platform.machine() or UNKNOWN}"


def version_text(program: str = "htap-exporter") -> str:
    """What `--version` prints, in the form of the Prometheus exporters."""
    return (f"{program}, version {__version__} (revision: {revision()})\n"
            f"  python version:   {python_version()} ({platform.python_implementation()})\n"
            f"  platform:         {platform_name()}")
