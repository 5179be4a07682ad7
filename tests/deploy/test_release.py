"""Releases: one version everywhere, CHANGELOG.md in the Prometheus projects' form, and the sdist and
the wheel that `python -m build` makes, checked by `twine check`, installed into clean virtualenvs
and run there as a user runs them.

The build runs on a copy of the checkout (its tracked and new files, as committed to a git
repository of its own), so the test sees the working tree and the build's litter stays out of it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from htap_exporter import __version__
from tests.deploy.tools import ROOT, load_yaml

CHANGELOG = ROOT / "CHANGELOG.md"
KINDS = ("CHANGE", "FEATURE", "ENHANCEMENT", "BUGFIX")
HEADING = re.compile(r"## (\d+)\.(\d+)\.(\d+) / (\d{4}-\d{2}-\d{2})")
TIMEOUT = 300
# The build's environment: a revision set by hand would override the one under test.
BUILD_ENV = {name: value for name, value in os.environ.items() if name != "HTAP_EXPORTER_REVISION"}


def test_one_version_in_the_package_the_chart_the_image_and_the_changelog() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "htap_exporter.__version__"}
    assert load_yaml(ROOT / "deploy" / "helm" / "htap-exporter" / "Chart.yaml")["appVersion"] == __version__
    defaults = re.findall(r"^ARG VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(encoding="utf-8"), re.MULTILINE)
    assert defaults == [__version__]
    released = HEADING.search(CHANGELOG.read_text(encoding="utf-8"))
    assert released is not None and ".".join(released.groups()[:3]) == __version__


def test_the_changelog_has_the_prometheus_projects_form() -> None:
    text = CHANGELOG.read_text(encoding="utf-8")
    sections = re.split(r"^(?=## )", text, flags=re.MULTILINE)
    assert sections[0] == "" and sections[1].startswith("## master / unreleased\n")
    releases: list[tuple[tuple[int, int, int], str]] = []
    for section in sections[2:]:
        heading, _, body = section.partition("\n")
        found = HEADING.fullmatch(heading)
        assert found, heading
        major, minor, patch, date = found.groups()
        releases.append(((int(major), int(minor), int(patch)), date))
        entries = [line for line in body.splitlines() if line.startswith("* ")]
        assert entries, heading
        kinds = []
        for entry in entries:
            kind = re.match(r"\* \[([A-Z]+)\] \S", entry)
            assert kind and kind.group(1) in KINDS, entry
            kinds.append(KINDS.index(kind.group(1)))
        assert kinds == sorted(kinds), f"{heading}: entries go CHANGE, FEATURE, ENHANCEMENT, BUGFIX"
        assert not [line for line in body.splitlines() if line.startswith(("-", "+"))], "entries are `* [KIND] ...`"
    assert releases == sorted(releases, reverse=True)                       # newest first
    assert [date for _, date in releases] == sorted((d for _, d in releases), reverse=True)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=release-test", "-c", "user.email=release-test@example.invalid",
                           "-c", "commit.gpgsign=false", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, timeout=60).stdout


def copy_checkout(target: Path) -> str:
    """The checkout's tracked and new (not ignored) files, committed to a fresh repository at
    `target`: the commit's id."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    names = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT).split("\0")
    for name in filter(None, names):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git("init", "-q", cwd=target)
    git("add", "-A", cwd=target)
    git("commit", "-q", "-m", "release test", cwd=target)
    return git("rev-parse", "HEAD", cwd=target).strip()


def clean_venv(path: Path) -> Path:
    """A virtualenv without system site packages; the exporter's dependencies are this test
    environment's (nothing is fetched), through a .pth line, so only the exporter comes from what
    was built."""
    venv.create(path, with_pip=False)
    python = path / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def pip_install(python: Path, what: Path, **env: str) -> None:
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                                "--no-deps", "--no-index", "--no-build-isolation", str(what)],
                               capture_output=True, text=True, timeout=TIMEOUT, env={**BUILD_ENV, **env})
    assert installed.returncode == 0, installed.stdout + installed.stderr


# Run in the clean venv: where the package came from, and whether the environment meets every
# requirement the installed distribution declares (what `pip check` asks of it).
INSPECT = textwrap.dedent("""
    import json, importlib.metadata as md, htap_exporter
    from packaging.requirements import Requirement
    unmet = []
    for text in md.distribution("htap-exporter").requires or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            if not req.specifier.contains(md.version(req.name), prereleases=True):
                unmet.append(text)
        except md.PackageNotFoundError:
            unmet.append(text)
    print(json.dumps({"file": htap_exporter.__file__, "unmet": unmet}))
""")


def run_installed(python: Path, revision: str, tmp_path: Path, example: Path) -> None:
    """The installed `htap-exporter` command: --version, then --config.check on the example config."""
    inspected = json.loads(subprocess.check_output([str(python), "-c", INSPECT], text=True, cwd=tmp_path))
    assert Path(inspected["file"]).is_relative_to(python.parent.parent), inspected["file"]
    assert inspected["unmet"] == []
    command = python.parent / "htap-exporter"
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    version = subprocess.run([str(command), "--version"], capture_output=True, text=True, cwd=tmp_path,
                             env=base, timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.splitlines() == [
        f"htap-exporter, version {__version__} (revision: {revision})",
        f"  python version:   {platform.python_version()} ({platform.python_implementation()})",
        f"  platform:         {sys.platform}/{platform.machine()}",
    ]
    secrets = {"HW_ACCESS_KEY": "RELEASETESTACCESSKEY1", "HW_SECRET_KEY": "release-test-secret-key-0123456789"}
    check = subprocess.run([str(command), "--config.file", str(example), "--config.check"], capture_output=True,
                           text=True, cwd=tmp_path, env={**base, **secrets}, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "af315b8e6aaa41799bd9a31f2de15abcin17" in check.stdout
    assert all(secret not in check.stdout + check.stderr for secret in secrets.values())


def test_the_sdist_and_the_wheel_pass_twine_check_install_and_run(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    revision = copy_checkout(source)
    dist = tmp_path / "dist"
    # --no-isolation: the build backend (setuptools) is the test extra's, nothing is fetched. The
    # wheel is built from the unpacked sdist, where there is no git: its revision is the sdist's.
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
                           capture_output=True, text=True, timeout=TIMEOUT, env=BUILD_ENV)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (sdist,) = dist.glob(f"htap_exporter-{__version__}.tar.gz")
    (wheel,) = dist.glob(f"htap_exporter-{__version__}-py3-none-any.whl")

    twine = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
                           capture_output=True, text=True, timeout=120)
    assert twine.returncode == 0, twine.stdout + twine.stderr

    package = {path.relative_to(source).as_posix() for path in (source / "htap_exporter").rglob("*.py")}
    top = f"htap_exporter-{__version__}/"
    with tarfile.open(sdist) as archive:
        in_sdist = {member.name.removeprefix(top) for member in archive.getmembers() if member.isfile()}
        carried = archive.extractfile(top + "htap_exporter/_revision.py")
        assert carried is not None and f"REVISION = {revision!r}" in carried.read().decode()
    # What the wheel needs, and the changelog; no tests, caches or other parts of the checkout.
    assert package | {"README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "setup.py", "PKG-INFO",
                      "htap_exporter/_revision.py"} <= in_sdist
    strays = {name for name in in_sdist if not name.startswith(("htap_exporter/", "htap_exporter.egg-info/"))}
    assert strays == {"README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in",
                      "PKG-INFO"}
    assert not [name for name in in_sdist if "__pycache__" in name or name.endswith((".pyc", ".pyo"))]

    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        assert f"REVISION = {revision!r}" in archive.read("htap_exporter/_revision.py").decode()
    assert package | {"htap_exporter/_revision.py"} == {name for name in in_wheel if not name.startswith(
        f"htap_exporter-{__version__}.dist-info/")}

    example = source / "config.example.yaml"
    from_wheel = clean_venv(tmp_path / "venv-wheel")
    pip_install(from_wheel, wheel)
    run_installed(from_wheel, revision, tmp_path, example)

    # The sdist installed by pip (a wheel built from it, with no git around), as the container image
    # builds without .git: the revision then comes from HTAP_EXPORTER_REVISION.
    from_sdist = clean_venv(tmp_path / "venv-sdist")
    image_revision = "0123456789abcdef0123456789abcdef01234567"
    pip_install(from_sdist, sdist, HTAP_EXPORTER_REVISION=image_revision)
    run_installed(from_sdist, image_revision, tmp_path, example)
