"""The collector protocol: what the scheduler knows of a collector, and nothing more.

A collector is a name, an interval (from its config section), the families it writes, and one
coroutine that, given an instance and its project's API client, returns the instance's rendered
samples or raises ApiError. Everything about time (spread, jitter, back-off, Retry-After, the
deadline, skipped ticks) stays in the scheduler; everything about one API stays in the collector.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, NamedTuple, Protocol, Sequence

from htap_exporter.cloud.client import ProjectClient
from htap_exporter.cloud.errors import ApiError
from htap_exporter.exposition.families import Family
from htap_exporter.exposition.store import TopSession
from htap_exporter.exposition.writer import InstanceIdentity, InstanceWriter


NO_RIDERS: Mapping[str, Any] = MappingProxyType({})


class CollectorOutput(NamedTuple):
    """One successful run for one instance: sample lines per family (see InstanceWriter), what
    the landing page shows of it, and the outputs of collectors that ride on this run's data
    (top sessions come from the session pages the session collector reads). A named tuple, as the
    other values made once a run (InstanceStats, InstanceBlock...): immutable like a frozen
    dataclass, made in ~0.5 us instead of ~1 us."""

    samples: dict[str, bytes]
    sessions: int | None = None
    top_sessions: tuple[TopSession, ...] | None = None
    riders: Mapping[str, CollectorOutput] = NO_RIDERS


class Collector(Protocol):
    @property
    def name(self) -> str:
        """The `collector` label value, and the key of its blocks in the store."""

    @property
    def interval(self) -> float:
        """Seconds between two runs for one instance (before the project's budget stretches it)."""

    @property
    def families(self) -> tuple[Family, ...]:
        """Every family this collector may write, in the order a body lists them."""

    @property
    def riders(self) -> tuple[str, ...]:
        """Names of the collectors whose output this one's runs carry (their success is its)."""

    @property
    def reports_up(self) -> bool:
        """True for the one collector whose runs are the instance's `htap_up` and `htap_poll_*`."""

    async def collect(self, instance: InstanceIdentity, client: ProjectClient) -> CollectorOutput:
        """One run for one instance; raises ApiError with a reason when it fails."""


# Family name -> (extra labels, value) of each sample: how the low-volume collectors hand over
# their figures, as plain data the tests can read (SampleData: any such mapping; Samples: the one
# the parsers build).
SampleData = Mapping[str, Sequence[tuple[Mapping[str, str], float]]]
Samples = dict[str, list[tuple[dict[str, str], float]]]


def kind_of(value: Any) -> str:
    """What a JSON value is, for an error about a document of the wrong shape."""
    if value is None:
        return "missing"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def json_object(document: Any, what: str) -> dict[str, Any]:
    """`document` when it is a JSON object; else a bad_response naming `what` (the API)."""
    if not isinstance(document, dict):
        raise ApiError("bad_response", f"{what}: expected a JSON object, got {kind_of(document)}")
    return document


def json_list(document: dict[str, Any], key: str, what: str, *, required: bool = False) -> list[Any]:
    """`document[key]` when it is a list; missing is an empty list unless `required`; anything else
    a bad_response naming `what` and the key."""
    value = document.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise ApiError("bad_response", f"{what}: {key} is {kind_of(value)}, not a list")
    return value


def declare(families: Sequence[tuple[str, str, str]]) -> tuple[Family, ...]:
    """(name, type, help) tuples as families."""
    return tuple(Family(name, kind, documentation) for name, kind, documentation in families)


def render(writer: InstanceWriter, data: SampleData) -> dict[str, bytes]:
    """Sample lines of each family that has samples; a family without any is left out."""
    return {name: writer.samples(name, samples) for name, samples in data.items() if samples}


async def get_json(client: ProjectClient, api: str, path: str, params: list[tuple[str, str]] | None = None) -> Any:
    """One GET of the project's API, its body parsed (invalid JSON: ApiError bad_response)."""
    response = await client.call(client.request(path, params), api)
    return response.json()
