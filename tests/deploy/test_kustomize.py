"""deploy/kubernetes/kustomization.yaml (and the tls component) rendered by `kubectl kustomize`,
offline, and the built-in objects validated with `kubernetes-validate --strict`."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import KUBERNETES, load_all_yaml, require, run

OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}


def kubectl() -> str:
    return require("kubectl", "the machine image")


def kustomize(tmp_path: Path, tls: bool) -> list[dict[str, Any]]:
    """What `kubectl apply -k` would apply: the plain manifests, or a user's kustomization that
    adds the tls component (kustomize wants a component outside its base's folder, hence a copy)."""
    base = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, base)
    target = base
    if tls:
        target = tmp_path / "mine"
        target.mkdir()
        (target / "kustomization.yaml").write_text(
            "resources: [../kubernetes]\ncomponents: [../kubernetes/tls]\n", encoding="utf-8")
    result = run([kubectl(), "kustomize", str(target)])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate(tmp_path: Path, objects: list[dict[str, Any]]) -> None:
    builtin = [o for o in objects if o["kind"] not in OPERATOR_KINDS]
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(builtin), encoding="utf-8")
    result = run([require("kubernetes-validate"), "--strict", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).count("passed") == len(builtin)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


@pytest.mark.slow
def test_the_kustomization_renders_the_plain_manifests_unchanged(tmp_path: Path) -> None:
    objects = kustomize(tmp_path, tls=False)
    validate(tmp_path, objects)
    listed = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text(encoding="utf-8"))["resources"]
    expected = [doc for file in listed for doc in load_all_yaml(KUBERNETES / file)]
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(objects, key=key) == sorted(expected, key=key)
    # Every manifest but the Secret's example and the sharded alternative is in it.
    assert set(listed) == {p.name for p in KUBERNETES.glob("*.yaml")} - {
        "kustomization.yaml", "secret.example.yaml", "statefulset.yaml", "statefulset-service.yaml"}


@pytest.mark.slow
def test_the_tls_component_serves_https_to_probes_and_the_servicemonitor(tmp_path: Path) -> None:
    objects = kustomize(tmp_path, tls=True)
    validate(tmp_path, objects)
    deployment = by_kind(objects, "Deployment")
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    assert main["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert main["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert "--web.config.file=/etc/htap-exporter-web/web.yml" in main["args"]
    web_secret = by_kind(objects, "Secret")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["web-config"]["secret"]["secretName"] == web_secret["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    web = yaml.safe_load(base64.b64decode(web_secret["data"]["web.yml"]))
    assert Path(web["tls_server_config"]["cert_file"]).parent == Path(mounts["tls"])
    (endpoint,) = by_kind(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https" and endpoint["tlsConfig"]["ca"]["secret"]["name"] == \
        volumes["tls"]["secret"]["secretName"]
