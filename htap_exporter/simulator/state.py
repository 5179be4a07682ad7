"""The simulator's state: its project's instances, the credentials it accepts and the tokens it
issued, the faults set, and what it observed. No HTTP here: the API families read and change it."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from htap_exporter.simulator.faults import Faults
from htap_exporter.simulator.instances import SimInstance, SimTaurus, instance_id_for, taurus_id_for

SIM_PROJECT_ID = "0123456789abcdef0123456789abcdef"
SIM_TOKEN = "sim-static-token-0000000000000000"
SIM_ACCESS_KEY = "SIMACCESSKEY00000001"
SIM_SECRET_KEY = "simSecretKey0000000000000000000000000001"
SIM_DOMAIN = "sim-domain"
SIM_USER = "sim-user"
SIM_PASSWORD = "sim-password-0001"


@dataclass
class Observed:
    requests: dict[str, int] = field(default_factory=dict)
    request_times: dict[str, list[float]] = field(default_factory=dict)
    auth_failures: int = 0
    auth_failure_times: list[float] = field(default_factory=list)
    iam_requests: int = 0
    tokens_issued: int = 0
    total_requests: int = 0  # session-list requests answered past authentication
    # When every cloud API request arrived (every family, not IAM), for rate checks and the bench's
    # pauses: on the monotonic clock, which every process of the machine shares and which no
    # setting of the wall clock moves (the exporter's run grid is on it too).
    api_request_times: list[float] = field(default_factory=list)
    discovery_requests: dict[str, int] = field(default_factory=dict)
    # Requests past authentication by fault target, for API families without a counter of their own.
    calls: dict[str, int] = field(default_factory=dict)

    def api_request(self) -> None:
        self.api_request_times.append(time.monotonic())
        if len(self.api_request_times) > 200_000:
            del self.api_request_times[:100_000]

    def call(self, target: str) -> None:
        self.calls[target] = self.calls.get(target, 0) + 1
        self.api_request()

    def discovery_request(self, api: str) -> None:
        self.discovery_requests[api] = self.discovery_requests.get(api, 0) + 1
        self.api_request()

    def request(self, instance_id: str) -> None:
        self.requests[instance_id] = self.requests.get(instance_id, 0) + 1
        times = self.request_times.setdefault(instance_id, [])
        times.append(time.time())
        del times[:-500]
        self.total_requests += 1

    def auth_failed(self) -> None:
        self.auth_failures += 1
        self.auth_failure_times.append(time.time())
        del self.auth_failure_times[:-500]


class SimState:
    def __init__(self, *, project_id: str = SIM_PROJECT_ID, instances: int = 5, sessions: int = 60,
                 token_ttl: float = 24 * 3600.0, seed: int = 1, first_index: int = 0,
                 sessions_spread: int | None = None) -> None:
        """Instance i has `sessions + 37 * i` sessions, or with `sessions_spread` a value from
        `sessions` to `sessions + sessions_spread` (a big fleet of like-sized instances)."""
        self.project_id = project_id
        self.instances: dict[str, SimInstance] = {}
        self.taurus: dict[str, SimTaurus] = {}
        # TaurusDB id -> its HTAP instances by id: discovery's step 2 for 50,000 TaurusDB instances
        # must not scan 100,000 HTAP instances per call.
        self.children: dict[str, dict[str, SimInstance]] = {}
        self._created = 0
        # first_index: a second simulated project gets ids of its own (instance_id_for(first_index), ...).
        for index in range(first_index, first_index + instances):
            taurus_id = taurus_id_for(index // 2)
            if taurus_id not in self.taurus:
                self.taurus[taurus_id] = SimTaurus(taurus_id, f"taurus-{index // 2 + 1}")
            step = 37 * (index - first_index)
            count = sessions + (step if sessions_spread is None else step % (sessions_spread + 1))
            self.add_instance(instance_id_for(index), f"htap-{index + 1}", sessions=count, seed=seed * 1000 + index,
                              taurus_id=taurus_id)
        self.static_tokens = {SIM_TOKEN}
        self.keys = {SIM_ACCESS_KEY: SIM_SECRET_KEY}
        self.users = {(SIM_DOMAIN, SIM_USER): SIM_PASSWORD}
        self.token_ttl = token_ttl
        self.issued_tokens: dict[str, tuple[str, float]] = {}  # token -> (project_id, expires at)
        self.faults = Faults()
        self.observed = Observed()

    def freeze(self, now: float) -> None:
        """Serve pre-built pages from now on. Instances with as many sessions share one set of
        pages (building rows costs ~10 ms per instance: 10,000 of them would take minutes)."""
        built: dict[int, dict[tuple[int, int], bytes]] = {}
        for instance in self.instances.values():
            pages = built.get(instance.sessions)
            if pages is None:
                instance.freeze(now)
                assert instance.static_pages is not None
                built[instance.sessions] = instance.static_pages
            else:
                instance.static_pages = pages

    def add_instance(self, instance_id: str, name: str, *, sessions: int = 60, seed: int = 0,
                     taurus_id: str | None = None) -> SimInstance:
        instance = SimInstance(instance_id, name, sessions, seed, taurus_id=taurus_id)
        self.instances[instance_id] = instance
        if taurus_id is not None:
            self.children.setdefault(taurus_id, {})[instance_id] = instance
        return instance

    def create_instance(self, name: str, *, taurus_id: str | None = None, status: str = "normal",
                        frozen: bool = False, sessions: int = 60) -> SimInstance:
        """A new HTAP instance, under `taurus_id` or under a new TaurusDB instance."""
        self._created += 1
        if taurus_id is None:
            taurus_id = taurus_id_for(1_000_000 + self._created)
        if taurus_id not in self.taurus:
            self.taurus[taurus_id] = SimTaurus(taurus_id, f"taurus-of-{name}")
        instance_id = hashlib.sha256(f"sim-created-{self._created}".encode()).hexdigest()[:32] + "in17"
        instance = self.add_instance(instance_id, name, sessions=sessions, seed=self._created, taurus_id=taurus_id)
        instance.status, instance.frozen = status, frozen
        return instance

    def delete_instance(self, instance_id: str) -> bool:
        """Delete an HTAP instance, or a TaurusDB instance with its HTAP instances."""
        if instance_id in self.taurus:
            del self.taurus[instance_id]
            for child in self.children.pop(instance_id, {}):
                del self.instances[child]
            return True
        instance = self.instances.pop(instance_id, None)
        if instance is None:
            return False
        if instance.taurus_id is not None:
            self.children.get(instance.taurus_id, {}).pop(instance_id, None)
        return True
