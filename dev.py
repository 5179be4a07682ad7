#!/usr/bin/env python3
"""The two commands a newcomer needs, on any machine with Python 3.11+:

    python3 dev.py demo    # a virtualenv in .venv, the exporter installed, the demo running on :9978
    python3 dev.py test    # the same virtualenv with the test extra, then the whole test suite

Extra arguments go to the exporter or to pytest: `python3 dev.py test -k config`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("HTAP_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def ensure_venv(extra: str | None) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"dev.py: Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"dev.py: creating a virtualenv in {VENV.name}", flush=True)
        venv.create(VENV, with_pip=True)
    target = f".[{extra}]" if extra else "."
    # Reinstall only when the project's metadata changed since the last install.
    stamp = VENV / f".htap-installed-{extra or 'runtime'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"dev.py: installing {target} into {VENV.name}", flush=True)
    subprocess.run([str(BIN / "python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(BIN / "python"), "-m", "pip", "install", "--quiet", "-e", target], check=True, cwd=ROOT)
    stamp.write_text(digest)


def run(command: list[str]) -> int:
    """Run `command`; Ctrl-C reaches it too (same process group), so wait for its own clean exit."""
    child = subprocess.Popen(command, cwd=ROOT)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        ensure_venv(None)
        return run([str(BIN / "htap-exporter"), "--demo", *rest])
    ensure_venv("test")
    return run([str(BIN / "python"), "-m", "pytest", *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
