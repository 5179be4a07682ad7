"""The README's Deploy section names files and commands that exist."""

from __future__ import annotations

import re

from tests.deploy.tools import KUBERNETES, ROOT


def deploy_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Deploy\n")
    return text[start:text.index("\n## ", start + 1)]


def test_every_deploy_path_in_the_readme_exists() -> None:
    paths = set(re.findall(r"deploy/[A-Za-z0-9_./-]*[A-Za-z0-9_]", deploy_section()))
    assert len(paths) > 10
    missing = sorted(p for p in paths if not (ROOT / p).exists() and p != "deploy/.env")
    assert not missing, missing


def test_every_manifest_is_applied_by_the_readme() -> None:
    applied = set(re.findall(r"-f (deploy/kubernetes/\S+)", deploy_section()))
    manifests = {f"deploy/kubernetes/{p.name}" for p in KUBERNETES.glob("*.yaml")}
    # The Secret is created from the shell; its example file only shows the shape.
    assert applied == manifests - {"deploy/kubernetes/secret.example.yaml", "deploy/kubernetes/kustomization.yaml"}
    # The kustomization over them is applied with -k.
    assert "kubectl apply -n monitoring -k deploy/kubernetes" in deploy_section()
