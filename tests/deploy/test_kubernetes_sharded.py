"""deploy/kubernetes: the sharded StatefulSet variant, checked like the Deployment it replaces."""

from __future__ import annotations

from typing import Any

import pytest

from htap_exporter.cli import build_parser, shard_from_args
from htap_exporter.fleet.sharding import Shard
from tests.deploy.tools import KUBERNETES, load_all_yaml, require, run

SHARDED = ["statefulset.yaml", "statefulset-service.yaml"]


def obj(file: str) -> dict[str, Any]:
    (document,) = load_all_yaml(KUBERNETES / file)
    return document


def pod(file: str) -> dict[str, Any]:
    return obj(file)["spec"]["template"]["spec"]


@pytest.mark.parametrize("file", SHARDED)
def test_objects_pass_kubernetes_validate_strict(file: str) -> None:
    result = run([require("kubernetes-validate"), "--strict", str(KUBERNETES / file)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout + result.stderr


def test_every_pod_derives_its_shard_from_its_ordinal_and_count_matches_replicas() -> None:
    statefulset = obj("statefulset.yaml")
    replicas = statefulset["spec"]["replicas"]
    (container,) = pod("statefulset.yaml")["containers"]
    args = build_parser().parse_args(container["args"])
    name = statefulset["metadata"]["name"]
    # The pods are NAME-0 .. NAME-(replicas-1): together they are every shard, once.
    shards = [shard_from_args(args, hostname=f"{name}-{ordinal}") for ordinal in range(replicas)]
    assert shards == [Shard(k, replicas) for k in range(replicas)]


def test_same_pod_as_the_deployment_but_for_the_shard_flags() -> None:
    (deployment,) = pod("deployment.yaml")["containers"]
    (sharded,) = pod("statefulset.yaml")["containers"]
    extra = [a for a in sharded["args"] if a.startswith("--shard.")]
    assert sharded["args"] == deployment["args"] + extra
    for key in set(deployment) | set(sharded):
        if key != "args":
            assert sharded.get(key) == deployment.get(key), key
    rest = {k: v for k, v in pod("statefulset.yaml").items() if k != "containers"}
    assert rest == {k: v for k, v in pod("deployment.yaml").items() if k != "containers"}


def test_prometheus_scrapes_every_replica_once() -> None:
    labels = obj("statefulset.yaml")["spec"]["template"]["metadata"]["labels"]
    service = obj("service.yaml")
    assert service["spec"]["selector"].items() <= labels.items()  # the scraped Service covers all pods
    governing = obj("statefulset-service.yaml")
    assert obj("statefulset.yaml")["spec"]["serviceName"] == governing["metadata"]["name"]
    assert governing["spec"]["clusterIP"] == "None"
    assert governing["spec"]["selector"].items() <= labels.items()
    # The ServiceMonitor must not also select the headless Service: each pod would be scraped twice.
    wanted = obj("servicemonitor.yaml")["spec"]["selector"]["matchLabels"]
    assert not wanted.items() <= governing["metadata"].get("labels", {}).items()
    assert wanted.items() <= service["metadata"]["labels"].items()
