"""deploy/docker-compose.yml: valid against the compose spec, and its pieces point at each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from htap_exporter.simulator import Simulator
from tests.deploy.tools import COMPOSE, DEPLOY, ROOT, load_yaml, require, require_unshare, run


def services() -> dict:
    return load_yaml(COMPOSE)["services"]


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    result = run([require("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_mounted_file_exists_and_images_build_from_the_dockerfile() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
        if "build" in service:
            assert (DEPLOY / service["build"]["context"] / "Dockerfile").resolve() == ROOT / "Dockerfile"


def test_the_simulator_service_runs_the_exporters_image() -> None:
    simulator, exporter = services()["simulator"], services()["exporter"]
    assert simulator["image"] == exporter["image"]
    assert simulator["entrypoint"] == ["python", "-m", "htap_exporter.simulator"]
    # The simulator's command line parses, with the arguments it is given.
    result = subprocess.run([sys.executable, "-m", "htap_exporter.simulator", *simulator["command"], "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # The image's health check asks the exporter's port, which the simulator does not serve.
    assert simulator["healthcheck"] == {"disable": True}


def test_the_exporter_config_polls_the_simulator_service_and_passes_the_check() -> None:
    simulator, exporter = services()["simulator"], services()["exporter"]
    listen = simulator["command"][simulator["command"].index("--listen") + 1]
    count = int(simulator["command"][simulator["command"].index("--instances") + 1])
    mount = next(v for v in exporter["volumes"] if v.endswith(":/etc/htap-exporter/config.yaml:ro"))
    config_file = DEPLOY / mount.split(":", 1)[0]
    config = load_yaml(config_file)
    project = config["projects"][0]
    for key in ("endpoint", "iam_endpoint"):
        url = urlsplit(project[key])
        assert (url.hostname, url.port) == ("simulator", int(listen.rsplit(":", 1)[1])), key
    # Exactly the instances the simulator serves (ids are derived from the index).
    served = Simulator(instances=count)
    assert project["project_id"] == served.project_id
    assert [(i["id"], i["name"]) for i in project["instances"]] == \
        [(i.id, i.name) for i in served.instances.values()]
    # The exporter accepts it, with the credentials compose gives it.
    env = {**os.environ, **exporter["environment"]}
    result = subprocess.run([sys.executable, "-m", "htap_exporter", "--config.file", str(config_file), "--config.check"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert exporter["environment"]["HW_SECRET_KEY"] not in result.stdout + result.stderr


def test_prometheus_scrapes_the_exporter_service_and_alerts_to_alertmanager() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "htap-exporter")
    assert job["static_configs"][0]["targets"] == ["exporter:9978"]
    assert "9978:9978" in services()["exporter"]["ports"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    prometheus = services()["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "./alertmanager:/etc/alertmanager:ro" in services()["alertmanager"]["volumes"]


# Runs inside a network and mount namespace where "simulator" resolves to loopback: the two
# services' own command lines, as compose gives them, until the exporter reports every instance up.
DRIVER = textwrap.dedent("""
    import json, os, subprocess, sys, time, urllib.request
    simulator_argv, exporter_argv, expected = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
    simulator = subprocess.Popen(simulator_argv, stdout=subprocess.DEVNULL)
    exporter = subprocess.Popen(exporter_argv, stderr=subprocess.PIPE, text=True)
    up, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline and len(up) < expected:
        try:
            body = urllib.request.urlopen("http://127.0.0.1:9978/metrics", timeout=2).read().decode()
            up = [l for l in body.splitlines() if l.startswith("htap_up{") and l.endswith(" 1.0")]
        except OSError:
            pass
        time.sleep(0.2)
    exporter.terminate()
    exporter.wait(10)
    simulator.terminate()
    simulator.wait(10)
    print(json.dumps({"up": up, "log": exporter.stderr.read()}))
""")


@pytest.mark.slow
def test_the_simulator_and_exporter_services_work_together(tmp_path: Path) -> None:
    """docker compose's two services, by their own command lines, with `simulator` resolving as in compose."""
    unshare = require_unshare("-rmn", "network and mount namespaces")
    simulator, exporter = services()["simulator"], services()["exporter"]
    mount = next(v for v in exporter["volumes"] if v.endswith(":/etc/htap-exporter/config.yaml:ro"))
    image_command = ["htap-exporter", "--config.file=/etc/htap-exporter/config.yaml"]   # the Dockerfile's
    exporter_argv = [arg.replace("/etc/htap-exporter/config.yaml", str(DEPLOY / mount.split(":", 1)[0]))
                     for arg in image_command]
    simulator_argv = simulator["entrypoint"] + simulator["command"]
    count = int(simulator["command"][simulator["command"].index("--instances") + 1])
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost simulator exporter\n")
    bin_dir = Path(sys.executable).parent   # `python` and `htap-exporter` as on the image's PATH
    env = {**os.environ, **exporter["environment"], "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(
        [unshare, "-rmn", "sh", "-c", f'ip link set lo up && mount --bind {hosts} /etc/hosts && exec "$@"', "sh",
         sys.executable, "-c", DRIVER, json.dumps(simulator_argv), json.dumps(exporter_argv), str(count)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert len(outcome["up"]) == count, outcome["log"]
