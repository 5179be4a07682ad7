"""The garbage collector around an apply of the fleet: off while it runs, then what it made frozen."""

from __future__ import annotations

import gc

import pytest

from htap_exporter import gcsettings


@pytest.fixture
def collector_state():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_no_collection_during_an_apply_then_what_it_made_is_frozen(collector_state):
    gc.enable()
    gc.unfreeze()
    frozen_before = gc.get_freeze_count()
    with gcsettings.applying():
        assert not gc.isenabled()
        made = [[index] for index in range(1000)]  # tracked containers, as an apply makes
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen_before + len(made)


def test_an_apply_that_fails_turns_collection_back_on_and_one_off_stays_off(collector_state):
    gc.enable()
    with pytest.raises(RuntimeError), gcsettings.applying():
        raise RuntimeError("the apply failed")
    assert gc.isenabled()
    gc.disable()
    with gcsettings.applying():
        pass
    assert not gc.isenabled()
