"""The latest rendered block of every instance, swapped in whole after each poll.

Asyncio runs one task at a time, so replacing an instance's block is atomic: a scrape sees either
the previous poll's output of an instance or the new one, never half of each. The joined body is
cached per format until the next change (`generation`), so scrapes between two polls (and any
number of concurrent scrapes) share one join.
"""

from __future__ import annotations

from exporter.metrics import OPENMETRICS_LAYOUT, TEXT_LAYOUT, InstanceBlock, InstanceStatus


class Store:
    def __init__(self) -> None:
        self._blocks: dict[str, InstanceBlock] = {}
        self._cache: dict[bool, tuple[int, bytes]] = {}
        self.generation = 0  # grows on every put and remove

    def put(self, key: str, block: InstanceBlock) -> None:
        self._blocks[key] = block
        self.generation += 1

    def remove(self, key: str) -> None:
        if self._blocks.pop(key, None) is not None:
            self.generation += 1

    def keys(self) -> set[str]:
        return set(self._blocks)

    def statuses(self) -> list[InstanceStatus]:
        """Every instance's status, by project, name and id."""
        return sorted((block.status for block in self._blocks.values()),
                      key=lambda status: (status.project_id, status.instance_name, status.instance_id))

    def render(self, openmetrics: bool = False) -> bytes:
        """Every instance's families, text format 0.0.4 or OpenMetrics (without `# EOF`): each
        family's HELP/TYPE once, then its samples from every instance, as both formats require."""
        cached = self._cache.get(openmetrics)
        if cached is not None and cached[0] == self.generation:
            return cached[1]
        every = [block.samples for block in self._blocks.values()]
        parts: list[bytes] = []
        for header, names in OPENMETRICS_LAYOUT if openmetrics else TEXT_LAYOUT:
            if len(names) == 1:
                name = names[0]
                samples = [family[name] for family in every if name in family]
            else:
                samples = [b"".join(family[part] for part in names) for family in every if names[0] in family]
            if samples:
                parts.append(header)
                parts.extend(samples)
        body = b"".join(parts)
        self._cache[openmetrics] = (self.generation, body)
        return body
