"""deploy/helm/htap-exporter: linted and rendered offline with the Helm SDK (helm-python-sdk), every
rendering's built-in objects validated with `kubernetes-validate --strict`, the operator's objects
checked against the Service and the promtool-tested rules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from htap_exporter import __version__
from tests.deploy.tools import DEPLOY, RULES, load_yaml, require, run

CHART = DEPLOY / "helm" / "htap-exporter"
NAMESPACE = "monitoring"
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
DEFAULT_RUNBOOKS = "https://github.com/htap-exporter/htap-exporter/blob/main/docs/runbooks.md"
# The fields of the prometheus-operator's CRDs (monitoring.coreos.com/v1) the chart may write.
SERVICEMONITOR_SPEC = {"jobLabel", "namespaceSelector", "selector", "endpoints", "targetLabels", "podTargetLabels"}
ENDPOINT_FIELDS = {"port", "path", "scheme", "interval", "scrapeTimeout", "tlsConfig", "basicAuth",
                   "relabelings", "metricRelabelings", "honorLabels"}

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "tls": {"tls": {"enabled": True, "existingSecret": "htap-exporter-tls"},
            "webConfig": {"inline": {"http_server_config": {"headers": {"X-Frame-Options": "deny"}}}},
            "serviceMonitor": {"enabled": True, "tlsConfig": {"serverName": "htap-exporter"}}},
    "sharded": {"sharding": {"enabled": True, "shards": 4}},
    "existing": {"config": {"existingConfigMap": "my-htap-config"},
                 "credentials": {"existingSecret": "my-htap-credentials"},
                 "webConfig": {"existingSecret": "my-htap-web"}},
    "monitoring": {"serviceMonitor": {"enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}},
                   "prometheusRule": {"enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}}},
}


def helm() -> Any:
    try:
        import helm_python
    except ImportError:
        if os.environ.get("HTAP_REQUIRE_PROMTOOL") == "1":
            pytest.fail("helm-python-sdk is required here (the deploy group)")
        pytest.skip("helm-python-sdk not installed (the deploy group)")
    return helm_python


def render(values: dict[str, Any], name: str = "htap-exporter") -> list[dict[str, Any]]:
    rendered = helm().Chart.load(str(CHART)).render(values, name=name, namespace=NAMESPACE)
    objects = []
    for path, text in rendered.items():
        if path.endswith(".yaml"):
            objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def workload(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    return found


def pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return workload(objects)["spec"]["template"]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (only,) = pod(objects)["spec"]["containers"]
    return only


def volume_of(objects: list[dict[str, Any]], mount_path: str) -> dict[str, Any]:
    mount = next(m for m in container(objects)["volumeMounts"] if m["mountPath"] == mount_path)
    return next(v for v in pod(objects)["spec"]["volumes"] if v["name"] == mount["name"])


@pytest.mark.slow
def test_helm_lint_strict_is_clean() -> None:
    result = helm().lint(str(CHART), strict=True)
    assert result["errors"] == [], result
    # Severity 1 is information (e.g. "icon is recommended"); warnings and errors fail.
    assert [m for m in result["messages"] if m["severity"] > 1] == [], result


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendering_passes_kubernetes_validate_strict(tmp_path: Path, variant: str) -> None:
    objects = render(VARIANTS[variant])
    builtin = [o for o in objects if o["kind"] not in OPERATOR_KINDS]
    assert {o["kind"] for o in builtin} >= {"Service", "PodDisruptionBudget"}
    path = tmp_path / f"{variant}.yaml"
    path.write_text(yaml.safe_dump_all(builtin), encoding="utf-8")
    result = run([require("kubernetes-validate"), "--strict", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") + result.stderr.count("passed") == len(builtin)
    for o in objects:
        assert o["metadata"].get("namespace") == NAMESPACE, o["kind"]


@pytest.mark.slow
def test_default_rendering_is_one_restricted_deployment_with_file_credentials(tmp_path: Path) -> None:
    objects = render({})
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]   # operator objects off
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert container(objects)["image"] == f"htap-exporter:{__version__}"
    spec = pod(objects)["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    security = container(objects)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container(objects)["livenessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert "memory" in container(objects)["resources"]["limits"]
    # Credentials: the Secret's keys are files the config names (re-read on rotation).
    config_text = one(objects, "ConfigMap")["data"]["config.yaml"]
    assert volume_of(objects, "/run/secrets/htap-exporter")["secret"]["secretName"] == "htap-exporter-credentials"
    assert "access_key_file: /run/secrets/htap-exporter/HW_ACCESS_KEY" in config_text
    assert volume_of(objects, "/etc/htap-exporter")["configMap"]["name"] == one(objects, "ConfigMap")["metadata"]["name"]
    # The config the chart ships passes the exporter's own check, with the Secret's files in place.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "HW_ACCESS_KEY").write_text("AKEXAMPLE0123456789")
    (secrets / "HW_SECRET_KEY").write_text("SKexampleSecretValue0123456789")
    config = tmp_path / "config.yaml"
    config.write_text(config_text.replace("/run/secrets/htap-exporter", str(secrets)))
    check = subprocess.run([sys.executable, "-m", "htap_exporter", "--config.file", str(config), "--config.check"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    # The PodDisruptionBudget selects the pods.
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod(objects)["metadata"]["labels"].items()
    service = one(objects, "Service")
    assert service["spec"]["selector"].items() <= pod(objects)["metadata"]["labels"].items()


@pytest.mark.slow
def test_the_config_checksum_rolls_the_pods_when_the_config_changes() -> None:
    before = pod(render({}))["metadata"]["annotations"]["checksum/config"]
    changed = load_yaml(CHART / "values.yaml")["config"]["inline"].replace("30s", "60s")
    after = pod(render({"config": {"inline": changed}}))["metadata"]["annotations"]["checksum/config"]
    assert re.fullmatch(r"[0-9a-f]{64}", before) and before != after


@pytest.mark.slow
def test_tls_serves_https_to_probes_and_the_servicemonitor() -> None:
    objects = render(VARIANTS["tls"])
    main = container(objects)
    assert main["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert main["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert "--web.config.file=/etc/htap-exporter-web/web.yml" in main["args"]
    web = yaml.safe_load(one(objects, "Secret")["stringData"]["web.yml"])
    tls_dir = "/etc/htap-exporter-tls"
    assert web["tls_server_config"] == {"cert_file": f"{tls_dir}/tls.crt", "key_file": f"{tls_dir}/tls.key"}
    assert web["http_server_config"] == {"headers": {"X-Frame-Options": "deny"}}
    assert volume_of(objects, tls_dir)["secret"]["secretName"] == "htap-exporter-tls"
    (endpoint,) = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https" and endpoint["tlsConfig"] == {"serverName": "htap-exporter"}
    assert "checksum/web-config" in pod(objects)["metadata"]["annotations"]


@pytest.mark.slow
def test_tls_without_a_secret_is_refused() -> None:
    with pytest.raises(Exception, match="tls.existingSecret"):
        render({"tls": {"enabled": True}})


@pytest.mark.slow
def test_sharded_variant_is_a_statefulset_with_matching_shard_count() -> None:
    objects = render(VARIANTS["sharded"])
    statefulset = one(objects, "StatefulSet")
    assert not [o for o in objects if o["kind"] == "Deployment"]
    assert statefulset["spec"]["replicas"] == 4
    args = container(objects)["args"]
    assert "--shard.count=4" in args and "--shard.index-from-hostname" in args
    headless = next(o for o in objects if o["kind"] == "Service" and o["spec"].get("clusterIP") == "None")
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"]
    # The ServiceMonitor selects by app.kubernetes.io/name: the headless Service must not carry it.
    assert "app.kubernetes.io/name" not in headless["metadata"]["labels"]


@pytest.mark.slow
def test_existing_configmap_secret_and_web_config_are_used_not_made() -> None:
    objects = render(VARIANTS["existing"])
    assert not [o for o in objects if o["kind"] in ("ConfigMap", "Secret")]
    assert volume_of(objects, "/etc/htap-exporter")["configMap"]["name"] == "my-htap-config"
    assert volume_of(objects, "/run/secrets/htap-exporter")["secret"]["secretName"] == "my-htap-credentials"
    assert volume_of(objects, "/etc/htap-exporter-web")["secret"]["secretName"] == "my-htap-web"


@pytest.mark.slow
def test_servicemonitor_scrapes_the_service_as_the_rules_job() -> None:
    objects = render(VARIANTS["monitoring"], name="prod")
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    assert (monitor["apiVersion"], monitor["metadata"]["labels"]["release"]) == \
        ("monitoring.coreos.com/v1", "kube-prometheus-stack")
    spec = monitor["spec"]
    assert set(spec) <= SERVICEMONITOR_SPEC
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= ENDPOINT_FIELDS
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] and endpoint["scheme"] == "http"
    # The job label comes from a Service label whose value is the job the rules match, whatever
    # the release is called (the Service here is "prod-htap-exporter").
    assert service["metadata"]["name"] == "prod-htap-exporter"
    assert service["metadata"]["labels"][spec["jobLabel"]] == "htap-exporter"
    assert 'job="htap-exporter"' in RULES.read_text(encoding="utf-8")


@pytest.mark.slow
def test_prometheusrule_is_the_promtool_tested_rules_file(tmp_path: Path) -> None:
    assert (CHART / "files" / RULES.name).read_text(encoding="utf-8") == RULES.read_text(encoding="utf-8")
    rule = one(render(VARIANTS["monitoring"]), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and set(rule["spec"]) == {"groups"}
    assert rule["spec"] == load_yaml(RULES)
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    result = run([require("promtool"), "check", "rules", str(extracted)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_prometheusrule_follows_a_name_override_and_a_runbook_base() -> None:
    values = {"nameOverride": "taurus-exporter", "prometheusRule": {
        "enabled": True, "runbookBaseUrl": "https://wiki.example.com/htap"}}
    rule = one(render(values), "PrometheusRule")
    text = yaml.safe_dump(rule["spec"])
    assert 'job="taurus-exporter"' in text and 'job="htap-exporter"' not in text
    urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert urls and all(u.startswith("https://wiki.example.com/htap#") for u in urls)
    assert DEFAULT_RUNBOOKS not in text


def test_chart_app_version_is_the_exporters() -> None:
    assert load_yaml(CHART / "Chart.yaml")["appVersion"] == __version__
