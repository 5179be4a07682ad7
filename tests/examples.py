"""How many examples the property tests (hypothesis) draw: by the profile in HYPOTHESIS_PROFILE.

- default: a developer's run draws new examples every time, and replays the ones that failed
  (kept in `.hypothesis/`) until they pass;
- ci (`.ci/run`): the same examples every run, so that a fresh clone cannot fail on an example
  that only one run happened to draw;
- quick (`python3 dev.py quick`, the quick loop): a fifth of the examples, new ones every run. The
  property tests are two thirds of the quick loop's time; a fifth of them keeps it well under a
  minute, and CI and `python3 dev.py test` still draw them all.

A test that wants more or fewer examples than hypothesis's default (100) asks `examples(n)`: n in
the default and ci profiles, n scaled as the profile scales the default elsewhere.
"""

from __future__ import annotations

import os

from hypothesis import settings

HYPOTHESIS_DEFAULT = 100  # hypothesis's own max_examples, which `examples` scales from
QUICK_SHARE = 5  # the quick loop draws one example in this many
LEAST = 10  # fewer than this rarely finds anything

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("quick", max_examples=HYPOTHESIS_DEFAULT // QUICK_SHARE)


def load_profile() -> None:
    """The profile HYPOTHESIS_PROFILE names (default: hypothesis's own)."""
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def examples(wanted: int) -> int:
    """The examples a test that wants `wanted` of them draws under the loaded profile."""
    scaled = wanted * settings.default.max_examples // HYPOTHESIS_DEFAULT
    return max(min(wanted, LEAST), scaled)
