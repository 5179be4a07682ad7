"""Background polling: one loop per instance, spread over the interval, decoupled from scrapes.

Rules (as in YACE's scraper): a poll never overlaps the previous one of the same instance (a slow
poll skips ticks, counted); results replace the instance's output whole; a failing instance backs
off with jitter (doubling from the interval up to the cap, Retry-After honoured) and never delays
another instance. The global request cap lives in the Transport, shared by all loops.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import ssl
from dataclasses import dataclass, replace

import aiohttp

from htap_exporter.cloud.client import HtapApi
from htap_exporter.cloud.auth import make_authenticator
from htap_exporter.cloud.budget import ApiBudget
from htap_exporter.clock import Clock, Deadline, DeadlineQueue
from htap_exporter.config import Config, InstanceConfig, MetricsConfig, PollConfig, ProjectConfig
from htap_exporter.exposition.metrics import InstanceIdentity, PollState, render_instance
from htap_exporter.redact import Redactor
from htap_exporter.config.secrets import SecretError, ca_context
from htap_exporter.collectors.sessions.counting import LabelCache, SessionCounter
from htap_exporter.exposition.store import Store
from htap_exporter.cloud.transport import ApiError, Proxies, RequestObserver, RequestSlots, Transport

# A server asking us to wait longer than this is more likely broken than right.
MAX_RETRY_AFTER = 3600.0
# A poll (all its pages) that outlasts this many intervals is abandoned as a timeout: a server
# paging slowly must not keep an instance's old sessions on show as current for half an hour.
POLL_DEADLINE_INTERVALS = 3
JITTER = 0.1

log = logging.getLogger(__name__)


def backoff_delay(failures: int, interval: float, cap: float, rng: random.Random) -> float:
    """Delay before the next poll after `failures` consecutive failures (>= 1)."""
    base = min(cap, interval * 2 ** min(failures - 1, 30))
    return base * rng.uniform(1 - JITTER, 1 + JITTER)


@dataclass(frozen=True)
class InstanceSpec:
    """Everything a poll loop depends on: when it changes on reload, the loop restarts."""

    project: ProjectConfig
    instance: InstanceConfig
    poll: PollConfig
    metrics: MetricsConfig


class _Loop:
    def __init__(self, spec: InstanceSpec, api: HtapApi, state: PollState, poller: Poller) -> None:
        self.spec = spec
        self.api = api
        self.state = state
        self.poller = poller
        self.identity = InstanceIdentity(spec.instance.id, spec.instance.name, spec.project.project_id,
                                         spec.project.region, spec.instance.facts)
        self.task: asyncio.Task[None] | None = None
        self.failures = 0
        self.last_problem: tuple[str, str | None] | None = None

    async def run(self, start_delay: float) -> None:
        clock = self.poller.clock
        next_due = clock.monotonic() + start_delay
        while True:
            await clock.sleep(next_due - clock.monotonic())
            retry_after = await self.poll_once()
            now = clock.monotonic()
            # Longer than configured when the project's API budget cannot sustain the fleet.
            interval = self.api.poll_interval(self.spec.poll.interval)
            if self.failures == 0:
                next_due += interval
                if next_due <= now:
                    missed = math.floor((now - next_due) / interval) + 1
                    self.state.skipped_ticks += missed
                    next_due += missed * interval
                    log.debug("poll overran the interval; ticks skipped",
                              extra={"instance_id": self.identity.instance_id, "skipped_ticks": missed})
            else:
                delay = backoff_delay(self.failures, interval, self.spec.poll.backoff_cap, self.poller.rng)
                if retry_after is not None:
                    delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
                next_due = now + delay
            self.state.pending = False
            self.publish()
            self.poller.first_poll_done(self.identity.instance_id)

    async def poll_once(self) -> float | None:
        clock = self.poller.clock
        started = clock.monotonic()
        retry_after = None
        identity = self.identity
        try:
            deadline = POLL_DEADLINE_INTERVALS * self.api.poll_interval(self.spec.poll.interval)
            counter = SessionCounter(self.spec.metrics, labels=self.poller.label_cache(self.spec.metrics))
            try:
                async with Deadline(clock, deadline, self.poller.deadlines):
                    result = await self.api.list_sessions(identity.instance_id, counter)
            except TimeoutError:
                raise ApiError("timeout", f"poll did not end within {deadline:g}s"
                                          f" ({POLL_DEADLINE_INTERVALS} intervals)") from None
            stats = result.stats
            if result.skipped_rows or stats.rows_without_duration:
                log.debug("rows left out", extra={
                    "instance_id": identity.instance_id, "sessions": stats.sessions, "pages": result.pages,
                    "rows_not_objects": result.skipped_rows, "rows_without_duration": stats.rows_without_duration})
        except ApiError as problem:
            self.failed(problem)
            retry_after = problem.retry_after
        except Exception:  # a bug of ours must cost one poll, not the instance's loop
            log.exception("unexpected error while polling", extra={"instance_id": identity.instance_id,
                                                                   "instance_name": identity.instance_name})
            self.failed(ApiError("bad_response", "unexpected error while handling the response"))
        else:
            if self.last_problem is not None:
                log.info("poll recovered", extra={"instance_id": identity.instance_id,
                                                  "instance_name": identity.instance_name})
            self.last_problem = None
            self.failures = 0
            self.state.up = True
            self.state.last_error_reason = None
            self.state.stats = stats
            self.state.last_success = clock.time()
        self.state.poll_duration = clock.monotonic() - started
        return retry_after

    def failed(self, problem: ApiError) -> None:
        self.failures += 1
        self.state.up = False
        self.state.stats = None  # no stale sessions served as current
        self.state.last_error_reason = problem.reason
        self.state.errors[problem.reason] = self.state.errors.get(problem.reason, 0) + 1
        key = (problem.reason, problem.error_code)
        fields = {"instance_id": self.identity.instance_id, "instance_name": self.identity.instance_name,
                  "reason": problem.reason, "error": problem.describe()}
        if key != self.last_problem:
            log.warning("poll failed", extra=fields)
        else:
            log.debug("poll failed again", extra=fields)
        self.last_problem = key

    def publish(self) -> None:
        self.poller.store.put(self.identity.instance_id, render_instance(self.identity, self.state))


class Poller:
    def __init__(self, *, session: aiohttp.ClientSession, store: Store, clock: Clock, redactor: Redactor,
                 observe: RequestObserver, rng: random.Random | None = None,
                 proxies: Proxies | None = None) -> None:
        self.session = session
        # The environment's proxies, read once (the session itself does not trust the environment).
        self.proxies = proxies if proxies is not None else Proxies.from_env()
        self.store = store
        self.clock = clock
        self.redactor = redactor
        self.observe = observe
        self.rng = rng or random.Random()
        self.deadlines = DeadlineQueue(clock)  # every poll's deadline, on one timer
        self.ready = asyncio.Event()
        self._loops: dict[str, _Loop] = {}
        self._apis: dict[ProjectConfig, HtapApi] = {}
        self._transport: Transport | None = None
        self._poll: PollConfig | None = None
        self._awaiting_first_poll: set[str] = set()
        # Counters of instances whose loop restarts on reload, so they stay monotonic.
        self._states: dict[str, PollState] = {}
        self._labels = LabelCache()

    def label_cache(self, metrics: MetricsConfig) -> LabelCache:
        """The fleet's cleaned label values, for the metrics config's label length."""
        if self._labels.max_length != metrics.max_label_length:
            self._labels = LabelCache(metrics.max_label_length)
        return self._labels

    def first_poll_done(self, instance_id: str) -> None:
        self._awaiting_first_poll.discard(instance_id)
        if not self._awaiting_first_poll:
            self.ready.set()

    def _api_for(self, project: ProjectConfig, transport: Transport) -> HtapApi:
        if project.ca_file is not None:
            transport = replace(transport, ssl_context=self._ca_context(project))
        auth = make_authenticator(project.auth, project_id=project.project_id, iam_endpoint=project.iam_endpoint,
                                  transport=transport, clock=self.clock, redactor=self.redactor)
        limiter = ApiBudget(project.api_rate_limit, self.clock) if project.api_rate_limit > 0 else None
        assert self._poll is not None
        return HtapApi(endpoint=project.endpoint, project_id=project.project_id, auth=auth, transport=transport,
                       max_pages=self._poll.max_pages, limiter=limiter)

    @staticmethod
    def _ca_context(project: ProjectConfig) -> ssl.SSLContext:
        try:
            return ca_context(project.ca_file)  # type: ignore[arg-type]
        except SecretError as problem:  # validated at load; it changed since
            log.error("cannot use the project's ca_file: every request will fail certificate checks",
                      extra={"project_id": project.project_id, "error": str(problem)})
            return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts nothing: never falls back to no checks

    def _use_poll_config(self, poll: PollConfig) -> Transport:
        if self._transport is None or poll != self._poll:
            self._poll = poll
            self._transport = Transport(self.session, RequestSlots(poll.concurrency),
                                        poll.timeout, poll.max_body_bytes, self.observe,
                                        self.redactor.redact, proxies=self.proxies)
            self._apis = {}
        return self._transport

    def api_for(self, project: ProjectConfig, poll: PollConfig) -> HtapApi:
        """The project's API client (credentials, token, auth gate, request budget), shared with
        discovery so that a project has one token and one budget."""
        transport = self._use_poll_config(poll)
        key = replace(project, instances=())
        api = self._apis.get(key)
        if api is None:
            api = self._apis[key] = self._api_for(key, transport)
        return api

    async def apply(self, config: Config) -> None:
        """Start polling `config`, or switch to it: unchanged instances keep their loop and state,
        changed ones restart (keeping their counters), removed ones stop and their series vanish."""
        # Key the API and the specs by the project without its instance list: adding or renaming one
        # instance must not restart its siblings' loops nor reset the project's auth gate and token.
        keys = {project: replace(project, instances=()) for project in config.projects}
        apis = {key: self.api_for(key, config.poll) for key in keys.values()}
        self._apis = apis
        wanted = {
            instance.id: InstanceSpec(keys[project], instance, config.poll, config.metrics)
            for project in config.projects for instance in project.instances
        }
        await self._stop_loops([instance_id for instance_id, loop in self._loops.items()
                                if wanted.get(instance_id) != loop.spec], wanted)
        new_ids = [instance_id for instance_id in wanted if instance_id not in self._loops]
        for index, instance_id in enumerate(new_ids):
            spec = wanted[instance_id]
            loop = _Loop(spec, apis[spec.project], self._states.pop(instance_id, None) or PollState(pending=True),
                         self)
            self._loops[instance_id] = loop
            # Listed (htap_instance_info) and on the landing page from the start, before any poll.
            loop.publish()
            if not self.ready.is_set():
                self._awaiting_first_poll.add(instance_id)
            # Spread first polls over the interval: no thundering herd against the API.
            interval = apis[spec.project].poll_interval(config.poll.interval)
            start_delay = interval * index / max(1, len(new_ids))
            loop.task = asyncio.create_task(loop.run(start_delay), name=f"poll-{instance_id}")
        if not wanted:
            self.ready.set()

    async def _stop_loops(self, instance_ids: list[str], wanted: dict[str, InstanceSpec]) -> None:
        """Stop these loops together: cancel every task first, then wait for all of them at once
        (one at a time, 10,000 loops took seconds to stop). Loops of instances still wanted keep
        their state, so counters stay monotonic across the restart; the others' series vanish."""
        loops = [self._loops.pop(instance_id) for instance_id in instance_ids]
        tasks = [loop.task for loop in loops if loop.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for loop in loops:
            instance_id = loop.identity.instance_id
            self._awaiting_first_poll.discard(instance_id)
            if instance_id in wanted:
                self._states[instance_id] = loop.state
            else:
                self.store.remove(instance_id)
                self._states.pop(instance_id, None)

    async def stop(self) -> None:
        """Stop every loop; the series stay (a stop is not a removal)."""
        started = time.monotonic()
        count = len(self._loops)
        await self._stop_loops(list(self._loops), {instance_id: loop.spec for instance_id, loop in self._loops.items()})
        log.info("polling stopped", extra={"loops": count, "seconds": round(time.monotonic() - started, 3)})
