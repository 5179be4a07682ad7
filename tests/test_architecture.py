"""The layers in pyproject.toml's import-linter contracts hold, and a wrong import is refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is in the lint dependency group")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    # cwd first on the path: the copy under test, not the installed package, is analysed.
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120)


def copy_project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "htap_exporter", tmp_path / "htap_exporter",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_lower_layer_importing_a_higher_one_is_refused_naming_both(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    budget = project / "htap_exporter" / "cloud" / "budget.py"
    budget.write_text(budget.read_text() + "\nfrom htap_exporter.runtime import scheduler  # noqa: E402,F401\n")
    result = lint_imports(project)
    assert result.returncode != 0, result.stdout
    assert "htap_exporter.cloud is not allowed to import htap_exporter.runtime" in result.stdout, result.stdout
    assert "htap_exporter.cloud.budget -> htap_exporter.runtime.scheduler" in result.stdout, result.stdout


def test_the_web_importing_a_collector_is_refused(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    server = project / "htap_exporter" / "web" / "server.py"
    server.write_text(server.read_text() + "\nfrom htap_exporter.collectors import labels  # noqa: E402,F401\n")
    result = lint_imports(project)
    assert result.returncode != 0, result.stdout
    assert "htap_exporter.web.server -> htap_exporter.collectors.labels" in result.stdout, result.stdout


def test_the_module_map_lists_every_module() -> None:
    """docs/architecture.md's module map names every module of the package, and no module that is gone."""
    import re
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(htap_exporter/[\w/]+\.py)` \|", text, re.M))
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "htap_exporter").rglob("*.py")
               if "__pycache__" not in path.parts
               and (path.name not in ("__init__.py", "__main__.py") or path.parent.name == "htap_exporter")}
    assert listed == modules, (sorted(modules - listed), sorted(listed - modules))
