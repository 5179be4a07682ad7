"""The quick loop: `python3 dev.py quick` runs what the README says, with a fifth of the examples."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import settings

from tests.examples import LEAST, examples

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def profile():
    """Load a profile for one test, then the one the run had."""
    before = settings.default
    yield settings.load_profile
    settings.register_profile("_before_test", before)
    settings.load_profile("_before_test")


@pytest.mark.parametrize("name", ["default", "ci"])
def test_the_default_and_ci_profiles_draw_what_a_test_asks(profile, name):
    profile(name)
    assert [examples(wanted) for wanted in (5, 25, 100, 300)] == [5, 25, 100, 300]


def test_the_quick_profile_draws_a_fifth_and_never_too_few(profile):
    profile("quick")
    assert settings.default.max_examples == 20  # a test that asks for none: a fifth of hypothesis's 100
    assert [examples(wanted) for wanted in (5, 25, 100, 300)] == [5, LEAST, 20, 60]


def _dev():
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("environment, expected", [({}, "quick"), ({"HYPOTHESIS_PROFILE": "ci"}, "ci")])
def test_dev_py_quick_runs_the_fast_tests_in_parallel_with_the_quick_profile(monkeypatch, environment, expected):
    dev = _dev()
    ran = []
    monkeypatch.setattr(dev, "ensure_venv", lambda group: ran.append(("venv", group)))
    monkeypatch.setattr(dev, "run", lambda command, env=None: ran.append((command, env)) or 0)
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert dev.main(["quick", "-k", "config"]) == 0
    (_, group), (command, env) = ran
    assert group == "dev"
    assert command[1:] == ["-m", "pytest", "-n", "auto", "-m", "not slow", "-k", "config"]
    assert env["HYPOTHESIS_PROFILE"] == expected
