"""The Dockerfile: hadolint-clean, and its exact ENTRYPOINT/CMD and HEALTHCHECK work with the wheel.

No container runtime is needed: the image's last stage is a venv holding the wheel built from the
checkout. The test builds that wheel, installs it into a venv of its own and runs the image's
command line in a network namespace of its own (so the image's fixed port 9978 is free and the
health check's URL is the image's, unchanged). The only substitution is the config path, which a
container gets from a mount.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canonical

from tests.deploy.tools import ROOT, require, require_unshare, run

DOCKERFILE = ROOT / "Dockerfile"
CONFIG_IN_IMAGE = "/etc/htap-exporter/config.yaml"
VENV_IN_IMAGE = "/opt/htap-exporter"


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]]

    def last(self, keyword: str) -> str:
        return [args for kw, args in self.instructions if kw == keyword][-1]


def stages() -> list[Stage]:
    """The Dockerfile's stages as (keyword, arguments) lists, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out: list[Stage] = []
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            out.append(Stage(args.strip(), []))
        else:
            out[-1].instructions.append((keyword.upper(), args.strip()))
    return out


def test_hadolint_finds_nothing() -> None:
    # No errors, and no warnings or style notes either.
    result = run([require("hadolint"), "--failure-threshold", "style", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_image_shape() -> None:
    build, final = stages()
    assert build.base.endswith(" AS build") and build.base.split()[0] == final.base
    assert "-slim" in final.base
    assert "pip wheel" in build.last("RUN") and f"python -m venv {VENV_IN_IMAGE}" in build.last("RUN")
    assert final.last("COPY") == f"--from=build {VENV_IN_IMAGE} {VENV_IN_IMAGE}"
    assert final.last("ENV").startswith(f"PATH={VENV_IN_IMAGE}/bin:$PATH")
    user = final.last("USER")
    assert all(part.isdigit() and int(part) > 0 for part in user.split(":")), user
    assert final.last("EXPOSE") == "9978"
    assert json.loads(final.last("CMD")) == [f"--config.file={CONFIG_IN_IMAGE}"]
    assert (ROOT / ".dockerignore").exists()


def image_command() -> tuple[list[str], list[str]]:
    final = stages()[-1]
    command = json.loads(final.last("ENTRYPOINT")) + json.loads(final.last("CMD"))
    health = final.last("HEALTHCHECK")
    health_argv = json.loads(health[health.index("CMD ") + 4:])
    return command, health_argv


# Runs inside the namespace: starts the simulator and the image's command, reads /metrics on the
# image's port, runs the health check while the exporter runs and after it stopped.
DRIVER = textwrap.dedent("""
    import json, os, subprocess, sys, time, urllib.request
    command, health, config = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    sim = subprocess.Popen([sys.executable, "-m", "htap_exporter.simulator", "--listen", "127.0.0.1:0",
                            "--instances", "2", "--write-config", config], stdout=subprocess.PIPE, text=True)
    sim.stdout.readline()   # "simulator listening on ...", after the config is written
    # Poll every second rather than every 15 s: the first polls are spread over one interval.
    with open(config) as f:
        text = f.read().replace("interval: 15s", "interval: 1s").replace("timeout: 5s", "timeout: 1s")
    with open(config, "w") as f:
        f.write(text)
    exporter = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    metrics, deadline = "", time.monotonic() + 30
    while time.monotonic() < deadline and metrics.count(" 1.0") < 2:
        try:
            body = urllib.request.urlopen("http://127.0.0.1:9978/metrics", timeout=2).read().decode()
            metrics = "\\n".join(l for l in body.splitlines() if l.startswith("htap_up{"))
        except OSError:
            pass
        time.sleep(0.1)
    healthy = subprocess.run(health).returncode
    exporter.terminate()
    stopped = exporter.wait(10)
    unhealthy = subprocess.run(health, stderr=subprocess.DEVNULL).returncode
    sim.terminate()
    sim.wait(10)
    print(json.dumps({"metrics": metrics, "healthy": healthy, "unhealthy": unhealthy, "exit": stopped,
                      "log": exporter.stderr.read()}))
""")


@pytest.mark.slow
def test_the_images_command_runs_the_exporter_built_from_the_wheel(tmp_path: Path) -> None:
    unshare = require_unshare("-rn", "network namespaces")
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(wheels), str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("htap_exporter-*.whl")
    image_venv = tmp_path / "opt" / "htap-exporter"
    venv.create(image_venv, with_pip=False)
    python = image_venv / "bin" / "python"
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                                "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    # Dependencies: the ones this test environment already has (the image installs the same
    # requirements from PyPI); the exporter itself must come from the wheel, not the checkout.
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    where = subprocess.check_output([str(python), "-c", "import htap_exporter; print(htap_exporter.__file__)"],
                                    text=True, cwd=tmp_path).strip()
    assert Path(where).is_relative_to(image_venv), where

    command, health = image_command()
    config = tmp_path / "config.yaml"
    command = [arg.replace(CONFIG_IN_IMAGE, str(config)) for arg in command]
    env = {**os.environ, "PATH": f"{image_venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [unshare, "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
         str(python), "-c", DRIVER, json.dumps(command), json.dumps(health), str(config)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=90)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["metrics"].count("} 1.0") == 2, outcome["log"]
    assert outcome["healthy"] == 0, outcome["log"]
    assert outcome["unhealthy"] != 0   # the health check notices a stopped exporter
    assert outcome["exit"] == 0, outcome["log"]


def test_oci_labels_with_version_and_revision_from_build_args() -> None:
    final = stages()[-1]
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"', final.last("LABEL")))
    assert set(labels) == {f"org.opencontainers.image.{key}" for key in
                           ("title", "description", "source", "licenses", "version", "revision")}
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    args = [value.split("=")[0] for keyword, value in final.instructions if keyword == "ARG"]
    assert args == ["VERSION", "REVISION"]


def test_the_image_installs_from_the_constraints_file() -> None:
    build = stages()[0]
    assert "constraints.txt" in [copy for keyword, args in build.instructions if keyword == "COPY"
                                 for copy in args.split()]
    assert "--constraint constraints.txt" in build.last("RUN")
    assert "!constraints.txt" in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    # Every dependency (and the `fast` extra's) is pinned, to a version its specifier accepts.
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonical(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for requirement in map(Requirement, project["dependencies"] + project["optional-dependencies"]["fast"]):
        name = canonical(requirement.name)
        assert name in pins, name
        assert requirement.specifier.contains(pins[name]), (name, pins[name])
    assert "htap-exporter" not in pins
