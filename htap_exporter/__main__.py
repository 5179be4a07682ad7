"""`python -m htap_exporter` and the `htap-exporter` command.

SIGHUP's default action ends the process, and importing aiohttp and the rest takes a few tenths of
a second: the handler is installed here, before those imports, and the SIGHUPs it collects are
handed to the CLI, which reloads once it runs.
"""

import signal
import sys


def main() -> int:
    hangups: list[int] = []
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda signum, frame: hangups.append(signum))
    from htap_exporter.cli import main as run

    return run(hangups=hangups)


if __name__ == "__main__":
    sys.exit(main())
