"""IAM's token API: `POST /v3/auth/tokens` issues a token for a configured user, scoped to a
project, and the cloud API checks the tokens it issued."""

from __future__ import annotations

import datetime
import secrets
import time
from typing import Protocol

from aiohttp import web

from htap_exporter.simulator import faults
from htap_exporter.simulator.faults import Call
from htap_exporter.simulator.replies import error
from htap_exporter.simulator.routing import Api
from htap_exporter.simulator.state import Observed, SimState

FAULTS = {"status": faults.bare_status, "echo": faults.echo}


class TokenIssuer(Protocol):
    """What answers the token request: the simulator, whose method a test may wrap."""

    async def issue_token(self, request: web.Request) -> web.Response: ...


def apis(issuer: TokenIssuer) -> list[Api]:
    async def answer(call: Call) -> web.StreamResponse:
        return await issuer.issue_token(call.request)
    return [Api("POST", "/v3/auth/tokens", "iam", answer, count=_count, faults=FAULTS, signed=False)]


def _count(observed: Observed, request: web.Request) -> None:
    observed.iam_requests += 1


async def issue_token(sim: SimState, request: web.Request) -> web.Response:
    try:
        document = await request.json()
        identity = document["auth"]["identity"]
        user = identity["password"]["user"]
        name, password, domain = user["name"], user["password"], user["domain"]["name"]
        project_id = document["auth"]["scope"]["project"]["id"]
    except (ValueError, KeyError, TypeError):
        return error(400, "IAM.0007", "Request body is invalid.")
    if "password" not in identity.get("methods", []):
        return error(400, "IAM.0007", "Request body is invalid.")
    if sim.users.get((domain, name)) != password:
        sim.observed.auth_failed()
        return error(401, "IAM.0004", "The username or password is wrong.")
    token = "MIIsim" + secrets.token_urlsafe(48)
    expires = time.time() + sim.token_ttl
    sim.issued_tokens[token] = (project_id, expires)
    sim.observed.tokens_issued += 1
    expires_at = datetime.datetime.fromtimestamp(expires, tz=datetime.timezone.utc)
    body = {"token": {"expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                      "methods": ["password"], "project": {"id": project_id}}}
    return web.json_response(body, status=201, headers={"X-Subject-Token": token})


def token_problem(sim: SimState, token: str, project_id: str) -> str | None:
    """None if `token` opens `project_id`, else why not (as the API says it)."""
    if token in sim.static_tokens:
        return None
    issued = sim.issued_tokens.get(token)
    if issued is None:
        return "decrypt token fail"
    scope, expires = issued
    if time.time() >= expires:
        return "token expires"
    if scope != project_id:
        return "token is not scoped to this project"
    return None
