"""The latest rendered sections of every instance, swapped in whole after each poll.

Asyncio runs one task at a time, so replacing an instance's dict of sections is atomic: a scrape
sees either the previous poll's output of an instance or the new one, never half of each.
"""

from __future__ import annotations

from exporter.metrics import Section


class Store:
    def __init__(self) -> None:
        self._blocks: dict[str, dict[str, Section]] = {}
        # Family name -> HELP/TYPE header, in the order families were first seen, so the output
        # groups all samples of a family under one header, as the text format requires.
        self._headers: dict[str, bytes] = {}

    def put(self, key: str, sections: dict[str, Section]) -> None:
        for name, section in sections.items():
            if name not in self._headers:
                self._headers[name] = section.header
        self._blocks[key] = sections

    def remove(self, key: str) -> None:
        self._blocks.pop(key, None)

    def keys(self) -> set[str]:
        return set(self._blocks)

    def render(self) -> bytes:
        blocks = list(self._blocks.values())
        parts: list[bytes] = []
        for name, header in self._headers.items():
            samples = [block[name].samples for block in blocks if name in block]
            if samples:
                parts.append(header)
                parts.extend(samples)
        return b"".join(parts)
