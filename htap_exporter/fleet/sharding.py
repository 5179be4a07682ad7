"""Which replica polls which instance: a stable partition of the fleet by rendezvous hashing.

Every replica computes the same answer from the instance id alone, with no coordination: each
shard scores the id, the highest score owns it. Growing from N to N+1 shards moves only the
instances the new shard now wins (about 1/(N+1) of them) and shrinking moves only the removed
shard's share, so a resize does not reshuffle the whole fleet's series between replicas.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# A StatefulSet names its pods NAME-0, NAME-1, ...; the pod's hostname is that name.
ORDINAL_RE = re.compile(r"-(\d+)$")
# Each instance id is scored once per shard, so the count bounds the work per instance; a thousand
# replicas is far beyond any fleet (a replica polls thousands of instances).
MAX_SHARDS = 1000


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard count must be between 1 and {MAX_SHARDS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be between 0 and {self.count - 1}, got {self.index}")

    def owns(self, instance_id: str) -> bool:
        return self.count == 1 or shard_of(instance_id, self.count) == self.index


# One shard: every instance is this exporter's.
WHOLE_FLEET = Shard(0, 1)

def _score(instance_id: str, shard: int) -> int:
    # A cryptographic digest, not hash(): the same on every replica, platform and Python version.
    digest = hashlib.blake2b(f"{shard}/{instance_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(instance_id: str, count: int) -> int:
    """The shard (0..count-1) that polls `instance_id`."""
    return max(range(count), key=lambda shard: _score(instance_id, shard))


def ordinal_from_hostname(hostname: str) -> int:
    """The pod ordinal in a StatefulSet hostname (`htap-exporter-2` -> 2)."""
    match = ORDINAL_RE.search(hostname.split(".", 1)[0])
    if match is None:
        raise ValueError(f"hostname {hostname!r} does not end in -NUMBER (a StatefulSet pod name)")
    return int(match.group(1))
