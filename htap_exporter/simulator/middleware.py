"""The one middleware every cloud API operation runs behind: authentication (a token, or an
AK/SK signature), counting, the operation's checks, then the fault set on it."""

from __future__ import annotations

import datetime
from collections.abc import Callable

from aiohttp import web

from htap_exporter.cloud.signing import verify_authorization
from htap_exporter.simulator import iam
from htap_exporter.simulator.faults import Call
from htap_exporter.simulator.replies import error
from htap_exporter.simulator.routing import Api
from htap_exporter.simulator.state import SimState

# request, the project in its path -> None if the caller may proceed, else why not
Authenticate = Callable[[web.Request, str], str | None]


def authenticate(sim: SimState, request: web.Request, project_id: str) -> str | None:
    """None if the caller may proceed, else why not (as the API says it)."""
    token = request.headers.get("X-Auth-Token")
    if token is not None:
        return iam.token_problem(sim, token, project_id)
    if "Authorization" not in request.headers:
        return "x-auth-token not found"
    reason = verify_authorization(method=request.method, path=request.rel_url.raw_path,
                                  query_pairs=list(request.query.items()), headers=request.headers,
                                  body=b"", secret_for=sim.keys.get,
                                  now=datetime.datetime.now(datetime.timezone.utc))
    if reason is not None:
        return f"verify aksk signature fail: {reason}"
    return None


def guard(api: Api, sim: SimState, authenticated: Authenticate) -> web.RouteDef:
    """`api` as a route behind the middleware; `authenticated` decides on the caller (the
    simulator's own method, so that a test may wrap it)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if api.signed:
            problem = authenticated(request, request.match_info["project_id"])
            if problem is not None:
                sim.observed.auth_failed()
                return error(401, "APIG.0301", f"Incorrect IAM authentication information: {problem}")
        if api.count is None:
            sim.observed.call(api.target)
        else:
            api.count(sim.observed, request)
        call = api.check(request)
        if not isinstance(call, Call):
            return call
        fault = sim.faults.take(api.targets(request)) if sim.faults else None
        if fault is not None:
            answer = api.faults.get(fault.kind)
            response = await answer(fault, call) if answer is not None else None
            if response is not None:
                return response
        return await api.answer(call)

    return web.route(api.method, api.path, handler)
