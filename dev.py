#!/usr/bin/env python3
"""The commands a newcomer needs, on any machine with Python 3.11+:

    python3 dev.py demo    # a virtualenv in .venv, the exporter installed, the demo running on :9978
    python3 dev.py test    # the same virtualenv with the development groups, then the whole test suite
    python3 dev.py quick   # the quick loop: the tests without processes and real servers, in parallel
    python3 dev.py lint    # the architecture (lint-imports), the types (mypy --strict) and ruff

Extra arguments go to the exporter or to pytest: `python3 dev.py test -k config`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("HTAP_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def ensure_venv(group: str | None) -> None:
    """The package (editable) in the virtualenv, with the dependency group `group` (pyproject.toml's
    [dependency-groups]) when given."""
    if sys.version_info < (3, 11):
        sys.exit(f"dev.py: Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"dev.py: creating a virtualenv in {VENV.name}", flush=True)
        venv.create(VENV, with_pip=True)
    # Reinstall only when the project's metadata changed since the last install; the dev group's
    # install includes everything the demo needs.
    stamp = VENV / f".htap-installed-{group or 'runtime'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    for installed in {stamp, VENV / ".htap-installed-dev"} if group is None else {stamp}:
        if installed.exists() and installed.read_text() == digest:
            return
    print(f"dev.py: installing . {f'and the {group} group ' if group else ''}into {VENV.name}", flush=True)
    # pip 25.1 is the first to read dependency groups (--group).
    subprocess.run([str(BIN / "python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip>=25.1"], check=True)
    groups = ["--group", group] if group else []
    subprocess.run([str(BIN / "python"), "-m", "pip", "install", "--quiet", "-e", ".", *groups], check=True, cwd=ROOT)
    stamp.write_text(digest)


# Each from pyproject.toml's own configuration; all three run, and any failure fails the command.
LINTERS = (["lint-imports", "--no-cache"], ["mypy"], ["ruff", "check"])

# si_code of a signal the kernel sent itself, e.g. SIGINT from the terminal on Ctrl-C (Linux).
SI_KERNEL = 0x80


def run(command: list[str], env: dict[str, str] | None = None) -> int:
    """Run `command` and wait for its own clean exit. Ctrl-C in the terminal reaches it directly
    (same process group); a SIGINT or SIGTERM sent to this process alone (`kill -INT PID`) is
    passed on to it, once."""
    child = subprocess.Popen(command, cwd=ROOT, env=env)
    if not hasattr(signal, "sigtimedwait"):  # no siginfo here (Windows, macOS): always pass it on
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda received, frame: child.send_signal(received))
        return _exit_status(child.wait())
    watched = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        while child.poll() is None:
            # The timeout only covers a SIGCHLD that came before the mask; it is not a polling delay.
            received = signal.sigtimedwait(watched, 1.0)
            if received is None or received.si_signo == signal.SIGCHLD:
                continue
            if received.si_signo == signal.SIGINT and received.si_code == SI_KERNEL:
                continue  # Ctrl-C: the terminal sent it to the child as well
            child.send_signal(received.si_signo)
        return _exit_status(child.returncode)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)


def _exit_status(returncode: int) -> int:
    return returncode if returncode >= 0 else 128 - returncode  # killed by signal N: 128 + N, as shells say


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "quick", "lint"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        ensure_venv(None)
        return run([str(BIN / "htap-exporter"), "--demo", *rest])
    ensure_venv("dev")
    if command == "lint":
        failed = [tool for tool, *flags in LINTERS if run([str(BIN / tool), *flags, *rest]) != 0]
        if failed:
            print(f"dev.py: {', '.join(failed)} failed", file=sys.stderr)
            return 1
        return 0
    if command == "quick":
        # tests/e2e and tests/deploy are marked slow (tests/conftest.py); the property tests draw a
        # fifth of their examples (the `quick` profile, tests/examples.py) unless told otherwise.
        env = {**os.environ, "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "quick")}
        return run([str(BIN / "python"), "-m", "pytest", "-n", "auto", "-m", "not slow", *rest], env)
    return run([str(BIN / "python"), "-m", "pytest", *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
