"""How an API family describes its operations to the simulator's app and its one middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from htap_exporter.simulator.faults import COMMON, Answer, Call
from htap_exporter.simulator.state import Observed


@dataclass(frozen=True)
class Api:
    """One operation of the cloud API: its route, and what the middleware does before its answer.

    In order: the caller is authenticated (unless `signed` is false: IAM's token request), the
    request is counted, `check` answers a malformed request or a wrong name, the fault set on
    one of its targets answers through `faults`, and then `answer` does."""

    method: str
    path: str
    target: str  # the family's fault target, e.g. `list_instances`
    answer: Callable[[Call], Awaitable[web.StreamResponse]]
    check: Callable[[web.Request], Call | web.StreamResponse] = Call
    count: Callable[[Observed, web.Request], None] | None = None  # None: `Observed.call(target)`
    faults: Mapping[str, Answer] = field(default_factory=lambda: COMMON)
    # Path parameters whose value is a narrower fault target, tried before `target`: an instance id.
    specific: tuple[str, ...] = ()
    # Path parameters that narrow this family's own target: `list_replications:{instance_id}` fails
    # one instance's replication list and nothing else of it.
    scoped: tuple[str, ...] = ()
    signed: bool = True

    def targets(self, request: web.Request) -> tuple[str, ...]:
        return (*(f"{self.target}:{request.match_info[name]}" for name in self.scoped),
                *(request.match_info[name] for name in self.specific), self.target)
