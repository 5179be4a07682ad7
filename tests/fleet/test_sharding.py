"""The partition of the fleet across replicas: stable, balanced, and moving little on a resize."""

from __future__ import annotations

import argparse
import collections

import pytest

from htap_exporter.cli import build_parser, shard_from_args
from htap_exporter.fleet.sharding import Shard, ordinal_from_hostname, shard_of
from htap_exporter.simulator import instance_id_for

FLEET = [instance_id_for(index) for index in range(20_000)]


def test_assignment_is_pinned_across_versions_and_processes():
    # Replicas of different versions must agree during a rolling update: these values are part of
    # the contract (a change would move series between replicas on upgrade).
    assert [shard_of(instance_id_for(i), 4) for i in range(8)] == [0, 1, 1, 0, 3, 3, 1, 3]
    assert [shard_of(instance_id_for(i), 3) for i in range(8)] == [0, 1, 1, 0, 1, 1, 1, 1]
    assert all(shard_of(instance_id, 1) == 0 for instance_id in FLEET[:100])


@pytest.mark.parametrize("count", [2, 3, 4, 7, 16])
def test_every_instance_has_exactly_one_owner_and_shares_are_balanced(count):
    for instance_id in FLEET[:1000]:
        assert sum(1 for index in range(count) if Shard(index, count).owns(instance_id)) == 1
    owners = collections.Counter(shard_of(instance_id, count) for instance_id in FLEET)
    expected = len(FLEET) / count
    # Binomial spread at 20,000 ids: 4 standard deviations stay well inside 8 %.
    assert all(abs(owners[index] - expected) < 0.08 * expected for index in range(count)), owners


@pytest.mark.parametrize("before,after", [(3, 4), (4, 5), (1, 2), (8, 9)])
def test_growing_moves_only_what_the_new_shard_takes(before, after):
    moved = [i for i in FLEET if shard_of(i, before) != shard_of(i, after)]
    assert all(shard_of(i, after) == after - 1 for i in moved)  # nothing moves between old shards
    share = len(moved) / len(FLEET)
    assert abs(share - 1 / after) < 0.02, share


def test_shrinking_moves_only_the_removed_shards_instances():
    moved = [i for i in FLEET if shard_of(i, 4) != shard_of(i, 3)]
    assert {shard_of(i, 4) for i in moved} == {3}
    assert len(moved) == sum(1 for i in FLEET if shard_of(i, 4) == 3)


@pytest.mark.parametrize("hostname,ordinal", [
    ("htap-exporter-0", 0), ("htap-exporter-12", 12), ("web-3.htap.monitoring.svc.cluster.local", 3)])
def test_ordinal_from_a_statefulset_hostname(hostname, ordinal):
    assert ordinal_from_hostname(hostname) == ordinal


@pytest.mark.parametrize("hostname", ["htap-exporter", "laptop", "host-1a", "-"])
def test_hostname_without_ordinal_is_refused(hostname):
    with pytest.raises(ValueError, match="does not end in -NUMBER"):
        ordinal_from_hostname(hostname)


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_shard_flags():
    assert shard_from_args(args()) == Shard(0, 1)
    assert shard_from_args(args("--shard.index", "2", "--shard.count", "3")) == Shard(2, 3)
    assert shard_from_args(args("--shard.index-from-hostname", "--shard.count", "4"),
                           hostname="htap-exporter-3") == Shard(3, 4)


@pytest.mark.parametrize("argv,hostname,message", [
    (["--shard.index", "3", "--shard.count", "3"], None,
     "--shard.index/--shard.count: shard index must be between 0 and 2, got 3"),
    (["--shard.index", "-1", "--shard.count", "2"], None,
     "--shard.index/--shard.count: shard index must be between 0 and 1, got -1"),
    (["--shard.count", "0"], None, "--shard.index/--shard.count: shard count must be between 1 and 1000, got 0"),
        (["--shard.count", "99999999999999999999999"], None,
         "--shard.index/--shard.count: shard count must be between 1 and 1000, got 99999999999999999999999"),
    (["--shard.index-from-hostname", "--shard.count", "2"], "htap-exporter-2",
     "--shard.index/--shard.count: shard index must be between 0 and 1, got 2"),
    (["--shard.index-from-hostname", "--shard.count", "2"], "laptop",
     "--shard.index-from-hostname: hostname 'laptop' does not end in -NUMBER (a StatefulSet pod name)"),
    (["--shard.index-from-hostname", "--shard.index", "1", "--shard.count", "2"], "x-1",
     "give either --shard.index or --shard.index-from-hostname, not both"),
])
def test_bad_shard_flags_name_the_problem(argv, hostname, message):
    with pytest.raises(ValueError) as raised:
        shard_from_args(args(*argv), hostname=hostname)
    assert str(raised.value) == message
