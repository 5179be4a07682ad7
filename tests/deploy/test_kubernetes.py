"""deploy/kubernetes: core objects valid for the API server, operator objects consistent with them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import KUBERNETES, RULES, load_all_yaml, load_yaml, require, run

CORE = ["configmap.yaml", "secret.example.yaml", "service.yaml", "deployment.yaml"]
DOCKERFILE_CMD = "--config.file=/etc/htap-exporter/config.yaml"


def obj(file: str) -> dict[str, Any]:
    (document,) = load_all_yaml(KUBERNETES / file)
    return document


def container() -> dict[str, Any]:
    (only,) = obj("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("file", CORE)
def test_core_objects_pass_kubernetes_validate_strict(file: str) -> None:
    result = run([require("kubernetes-validate"), "--strict", str(KUBERNETES / file)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout + result.stderr


def test_kubernetes_validate_strict_rejects_an_unknown_field(tmp_path: Path) -> None:
    broken = tmp_path / "deployment.yaml"
    broken.write_text((KUBERNETES / "deployment.yaml").read_text().replace("  replicas: 1", "  replica: 1"))
    assert run([require("kubernetes-validate"), "--strict", str(broken)]).returncode != 0


def test_every_file_is_listed_here() -> None:
    generated = {"prometheusrule.yaml", "servicemonitor.yaml"}
    sharded = {"statefulset.yaml", "statefulset-service.yaml"}  # tests/deploy/test_kubernetes_sharded.py
    kustomize = {"kustomization.yaml"}  # tests/deploy/test_kustomize.py
    assert {p.name for p in KUBERNETES.glob("*.yaml")} == set(CORE) | generated | sharded | kustomize


def test_deployment_wires_config_secret_and_port() -> None:
    pod = obj("deployment.yaml")["spec"]["template"]["spec"]
    main = container()
    assert main["args"][0] == DOCKERFILE_CMD
    mount = next(m for m in main["volumeMounts"] if m["mountPath"] == "/etc/htap-exporter")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == obj("configmap.yaml")["metadata"]["name"]
    assert "config.yaml" in obj("configmap.yaml")["data"]
    assert main["envFrom"][0]["secretRef"]["name"] == obj("secret.example.yaml")["metadata"]["name"]
    (port,) = main["ports"]
    service_port = obj("service.yaml")["spec"]["ports"][0]
    assert service_port["targetPort"] == port["name"] and port["containerPort"] == 9978
    labels = obj("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    assert obj("service.yaml")["spec"]["selector"].items() <= labels.items()
    assert obj("deployment.yaml")["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_probes_and_restricted_security_context() -> None:
    main = container()
    assert main["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http-metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http-metrics"}
    pod = obj("deployment.yaml")["spec"]["template"]["spec"]
    # The Pod Security Standards' restricted profile, field by field.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532       # the image's USER
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = main["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False


def test_resources_cover_the_measured_memory() -> None:
    resources = container()["resources"]
    mebibytes = {key: int(value.removesuffix("Mi")) for key, value in
                 (("request", resources["requests"]["memory"]), ("limit", resources["limits"]["memory"]))}
    # ~150 MB RSS measured at 1,000 instances: the request covers it, the limit doubles it.
    assert mebibytes["request"] * 1.048576 >= 150
    assert mebibytes["limit"] >= 2 * mebibytes["request"]
    assert "cpu" in resources["requests"] and "cpu" not in resources["limits"]


def test_configmap_config_passes_the_exporters_check_with_the_secrets_keys(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(obj("configmap.yaml")["data"]["config.yaml"], encoding="utf-8")
    secret = obj("secret.example.yaml")["stringData"]
    assert set(secret) == {"HW_ACCESS_KEY", "HW_SECRET_KEY"}
    result = subprocess.run([sys.executable, "-m", "htap_exporter", "--config.file", str(config), "--config.check"],
                            capture_output=True, text=True, env={**os.environ, **secret})
    assert result.returncode == 0, result.stderr
    assert secret["HW_SECRET_KEY"] not in result.stdout + result.stderr


def test_servicemonitor_scrapes_the_service() -> None:
    monitor = obj("servicemonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    service = obj("service.yaml")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # The job label is the Service's name; the alert rules match it.
    assert service["metadata"]["name"] == "htap-exporter"
    assert 'job="htap-exporter"' in RULES.read_text()
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}


def test_prometheusrule_is_generated_from_the_rules_file() -> None:
    result = subprocess.run([sys.executable, str(KUBERNETES / "prometheusrule.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rule = obj("prometheusrule.yaml")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"]["labels"].items() >= obj("servicemonitor.yaml")["metadata"]["labels"].items()
    assert rule["spec"] == load_yaml(RULES)


def test_prometheusrule_groups_pass_promtool(tmp_path: Path) -> None:
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump(obj("prometheusrule.yaml")["spec"]), encoding="utf-8")
    result = run([require("promtool"), "check", "rules", str(extracted)])
    assert result.returncode == 0, result.stdout + result.stderr
