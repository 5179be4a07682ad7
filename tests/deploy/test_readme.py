"""The README and docs/: the Deploy pages name files and commands that exist, every relative link
and #anchor resolves, and each moved page starts with its purpose."""

from __future__ import annotations

import re
from pathlib import Path

from tests.deploy.tools import DOCS, KUBERNETES, ROOT, documents, github_anchors, relative_links, rules


def deploy_section() -> str:
    """The README's Deploy section and docs/deploy.md, its long form."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Deploy\n")
    return text[start:text.index("\n## ", start + 1)] + (DOCS / "deploy.md").read_text(encoding="utf-8")


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


def broken_links(document: Path) -> list[str]:
    """The relative links of one document whose file or heading does not exist."""
    broken = []
    for target in relative_links(document.read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        if not file.exists():
            broken.append(target)
        elif anchor and (file.suffix != ".md" or anchor not in github_anchors(file.read_text(encoding="utf-8"))):
            broken.append(target)
    return broken


def test_every_relative_link_and_anchor_resolves() -> None:
    pages = documents()
    assert len(pages) > 10
    links = [link for page in pages for link in relative_links(page.read_text(encoding="utf-8"))]
    assert len(links) > 40 and any("#" in link for link in links)
    broken = {page.relative_to(ROOT).as_posix(): broken_links(page) for page in pages}
    assert not {page: links for page, links in broken.items() if links}


def test_the_link_check_finds_a_broken_file_and_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## Securing the endpoints: `--web.config.file`\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[a](other.md#securing-the-endpoints---webconfigfile) [b](#page) "
                    "[c](other.md#securing-the-endpoints-webconfigfile) [d](missing.md) [e](#nowhere) "
                    "`[f](#in-code)` [g](https://example.com/#x)\n")
    assert broken_links(page) == ["other.md#securing-the-endpoints-webconfigfile", "missing.md", "#nowhere"]


def test_every_docs_page_starts_with_a_title_and_its_purpose() -> None:
    for page in sorted(DOCS.glob("*.md")):
        lines = page.read_text(encoding="utf-8").split("\n")
        assert lines[0].startswith("# ") and lines[1] == "" and lines[2].strip(), page.name


def test_the_readme_links_every_docs_page() -> None:
    readme = set(relative_links((ROOT / "README.md").read_text(encoding="utf-8")))
    linked = {link.partition("#")[0] for link in readme}
    assert {f"docs/{page.name}" for page in DOCS.glob("*.md")} <= linked


def test_the_readme_reads_in_ten_minutes() -> None:
    """Install, configure, metrics, alerts, deploy, FAQ, in that order, behind a table of contents;
    the long references live in docs/."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", re.sub(r"^```.*?^```", "", readme, flags=re.S | re.M), flags=re.M)
    assert sections == ["Install", "Configure", "Metrics", "Alerts and dashboard", "Deploy", "Security",
                        "FAQ", "Development", "Dependencies, and why"]
    contents = readme[:readme.index("\n## Install\n")]
    assert all(f"(#{anchor})" in contents for anchor in github_anchors("\n".join(f"## {s}" for s in sections)))
    assert len(readme.split()) < 4500   # ~200 words a minute, with tables skimmed
    faq = readme[readme.index("\n## FAQ\n"):readme.index("\n## Development\n")]
    assert 6 <= len(re.findall(r"^\*\*.+\?\*\*", faq, flags=re.M)) <= 10


def test_the_readmes_alert_table_lists_every_alert_once() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `(Htap[A-Za-z]+)` \|", readme, flags=re.M)
    assert sorted(listed) == sorted(rule["alert"] for rule in rules() if "alert" in rule)
