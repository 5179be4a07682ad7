"""The factory of project clients: transport, credentials, budget and CA, built once per project.

The scheduler and the fleet both receive this factory, so that polling, every collector and
discovery of a project share one client: one token, one auth gate, one request budget. A client
lives as long as its project's settings (without the instance list: adding an instance must not
reset the project's token and gate) and the poll settings it was made with.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import replace

import aiohttp

from htap_exporter.clock import Clock
from htap_exporter.cloud.auth import make_authenticator
from htap_exporter.cloud.budget import ApiBudget
from htap_exporter.cloud.client import ProjectClient
from htap_exporter.cloud.transport import Proxies, RequestObserver, RequestSlots, Transport
from htap_exporter.config import PollConfig, ProjectConfig
from htap_exporter.config.secrets import SecretError, ca_context
from htap_exporter.redact import Redactor

log = logging.getLogger(__name__)


def client_key(project: ProjectConfig) -> ProjectConfig:
    """What a project's client depends on: not its instances, not its discovery settings."""
    return replace(project, instances=(), discovery=None)


class ClientFactory:
    def __init__(self, *, session: aiohttp.ClientSession, clock: Clock, redactor: Redactor,
                 observe: RequestObserver, proxies: Proxies | None = None) -> None:
        self.session = session
        # The environment's proxies, read once (the session itself does not trust the environment).
        self.proxies = proxies if proxies is not None else Proxies.from_env()
        self.clock = clock
        self.redactor = redactor
        self.observe = observe
        self._clients: dict[ProjectConfig, ProjectClient] = {}
        self._transport: Transport | None = None
        self._poll: PollConfig | None = None

    def _use_poll_config(self, poll: PollConfig) -> Transport:
        if self._transport is None or poll != self._poll:
            self._poll = poll
            self._transport = Transport(self.session, RequestSlots(poll.concurrency),
                                        poll.timeout, poll.max_body_bytes, self.observe,
                                        self.redactor.redact, proxies=self.proxies)
            self._clients = {}
        return self._transport

    def client(self, project: ProjectConfig, poll: PollConfig) -> ProjectClient:
        """The project's client, made on first use and shared afterwards."""
        transport = self._use_poll_config(poll)
        key = client_key(project)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self._make(key, transport, poll)
        return client

    def keep_only(self, projects: list[ProjectConfig]) -> None:
        """Forget the clients of projects no longer configured (their tokens and budgets)."""
        wanted = {client_key(project) for project in projects}
        self._clients = {key: client for key, client in self._clients.items() if key in wanted}

    def _make(self, project: ProjectConfig, transport: Transport, poll: PollConfig) -> ProjectClient:
        if project.ca_file is not None:
            transport = replace(transport, ssl_context=self._ca_context(project))
        auth = make_authenticator(project.auth, project_id=project.project_id, iam_endpoint=project.iam_endpoint,
                                  transport=transport, clock=self.clock, redactor=self.redactor)
        limiter = ApiBudget(project.api_rate_limit, self.clock) if project.api_rate_limit > 0 else None
        return ProjectClient(endpoint=project.endpoint, project_id=project.project_id, auth=auth, transport=transport,
                             max_pages=poll.max_pages, limiter=limiter)

    @staticmethod
    def _ca_context(project: ProjectConfig) -> ssl.SSLContext:
        try:
            return ca_context(project.ca_file)  # type: ignore[arg-type]
        except SecretError as problem:  # validated at load; it changed since
            log.error("cannot use the project's ca_file: every request will fail certificate checks",
                      extra={"project_id": project.project_id, "error": str(problem)})
            return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts nothing: never falls back to no checks
