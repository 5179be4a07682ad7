"""Writes the git commit into the package when it is built (pyproject.toml holds everything else).

`htap_exporter/_revision.py` exists only in what is built, never in the checkout: in the sdist's
tree (so a wheel built later from the sdist, where there is no git, still knows its commit) and in
the wheel. The commit is HTAP_EXPORTER_REVISION if set (the Dockerfile passes its REVISION build
argument), else `git rev-parse HEAD` when this folder is a git checkout's top, else the one an sdist
carries, else "unknown".
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
TARGET = Path("htap_exporter") / "_revision.py"


def git_revision() -> str | None:
    try:
        # safe.directory: `sudo pip install .` in a clone owned by someone else (this script, from
        # that clone, runs anyway) would otherwise make git refuse the repository.
        top = subprocess.run(["git", "-c", f"safe.directory={HERE}", "rev-parse", "--show-toplevel", "HEAD"],
                             cwd=HERE, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = top.stdout.split()
    # An unpacked sdist inside some other repository must not take that repository's commit.
    if top.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != HERE:
        return None
    return lines[1]


def carried_revision() -> str | None:
    try:
        text = (HERE / TARGET).read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(r"^REVISION = '([^'\\]+)'$", text, re.MULTILINE)
    return found.group(1) if found and found.group(1) != "unknown" else None


def revision() -> str:
    return os.environ.get("HTAP_EXPORTER_REVISION") or git_revision() or carried_revision() or "unknown"


def write_revision(folder: Path) -> None:
    path = folder / TARGET
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a hard link into the checkout must not be written through
    path.write_text(f'"""Written when the package was built (setup.py)."""\n\nREVISION = {revision()!r}\n',
                    encoding="utf-8")


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # an editable install asks git at run time instead
            write_revision(Path(self.build_lib))


class SDist(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        write_revision(Path(base_dir))


setup(cmdclass={"build_py": BuildPy, "sdist": SDist})
