"""The control API under `/_sim/`: fixed rows, faults (switchable while it runs), instances
created, changed and deleted while it runs, tokens revoked, and what the simulator saw.
Access is by path only: the simulator is a test fixture, bound to loopback."""

from __future__ import annotations

import bisect

from aiohttp import web

from htap_exporter.simulator.faults import Fault
from htap_exporter.simulator.replies import error
from htap_exporter.simulator.state import SimState

CONTROL_PREFIX = "/_sim"


class Control:
    def __init__(self, sim: SimState) -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(CONTROL_PREFIX + "/state", self.state),
            web.get(CONTROL_PREFIX + "/totals", self.totals),
            web.get(CONTROL_PREFIX + "/arrivals", self.arrivals),
            web.put(CONTROL_PREFIX + "/faults/{target}", self.set_fault),
            web.delete(CONTROL_PREFIX + "/faults/{target}", self.clear_fault),
            web.delete(CONTROL_PREFIX + "/faults", self.clear_faults),
            web.put(CONTROL_PREFIX + "/instances/{instance_id}/sessions", self.set_rows),
            web.post(CONTROL_PREFIX + "/instances", self.create_instance),
            web.patch(CONTROL_PREFIX + "/instances/{instance_id}", self.change_instance),
            web.delete(CONTROL_PREFIX + "/instances/{instance_id}", self.delete_instance),
            web.post(CONTROL_PREFIX + "/tokens/revoke", self.revoke_tokens),
            web.put(CONTROL_PREFIX + "/token_ttl", self.token_ttl),
        ]

    async def totals(self, request: web.Request) -> web.Response:
        """Small enough to ask often with 10,000 instances (state lists every request time)."""
        sim = self.sim
        return web.json_response({"requests": sim.observed.total_requests,
                                  "auth_failures": sim.observed.auth_failures,
                                  "instances": len(sim.instances),
                                  # pages one poll of every instance reads (static pages only)
                                  "pages_per_round": sum(len(i.static_pages or ()) for i in sim.instances.values())})

    async def arrivals(self, request: web.Request) -> web.Response:
        """When the cloud API requests arrived (monotonic seconds, as `time.monotonic()` gives them
        on this machine), from `?since=` on: a client's pauses show as gaps between them (the
        benchmark's measure of how long a scrape stalls polling)."""
        try:
            since = float(request.query.get("since", "0"))
        except ValueError:
            return error(400, "SIM.0001", "since must be a number")
        times = self.sim.observed.api_request_times
        return web.json_response(times[bisect.bisect_left(times, since):])

    async def state(self, request: web.Request) -> web.Response:
        sim, observed = self.sim, self.sim.observed
        return web.json_response({
            "requests": observed.requests,
            "request_times": observed.request_times,
            "auth_failures": observed.auth_failures,
            "auth_failure_times": observed.auth_failure_times,
            "iam_requests": observed.iam_requests,
            "tokens_issued": observed.tokens_issued,
            "instances": {i.id: i.name for i in sim.instances.values()},
            "taurus_instances": {t.id: t.name for t in sim.taurus.values()},
            "discovery_requests": observed.discovery_requests,
            "faults": {target: fault.kind for target, fault in sim.faults.items()},
        })

    async def set_fault(self, request: web.Request) -> web.Response:
        try:
            fault = Fault.from_json(await request.json())
        except (ValueError, TypeError) as problem:
            return web.json_response({"error": str(problem)}, status=400)
        self.sim.faults[request.match_info["target"]] = fault
        return web.json_response({"ok": True})

    async def clear_fault(self, request: web.Request) -> web.Response:
        self.sim.faults.pop(request.match_info["target"], None)
        return web.json_response({"ok": True})

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.sim.faults.clear()
        return web.json_response({"ok": True})

    async def set_rows(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        rows = await request.json()
        instance = self.sim.instances.get(instance_id) or self.sim.add_instance(instance_id, instance_id)
        instance.fixed_rows = rows
        return web.json_response({"ok": True})

    async def create_instance(self, request: web.Request) -> web.Response:
        """Body: {"name", optional "taurus_id", "status", "frozen", "sessions"}."""
        try:
            document = await request.json()
            instance = self.sim.create_instance(str(document["name"]), taurus_id=document.get("taurus_id"),
                                                status=str(document.get("status", "normal")),
                                                frozen=bool(document.get("frozen", False)),
                                                sessions=int(document.get("sessions", 60)))
        except (ValueError, KeyError, TypeError) as problem:
            return web.json_response({"error": f"bad request: {problem!r}"}, status=400)
        return web.json_response({"id": instance.id, "taurus_id": instance.taurus_id}, status=201)

    async def change_instance(self, request: web.Request) -> web.Response:
        """Body: any of {"name", "status", "frozen"}."""
        instance = self.sim.instances.get(request.match_info["instance_id"])
        if instance is None:
            return web.json_response({"error": "no such instance"}, status=404)
        document = await request.json()
        for key in ("name", "status", "frozen"):
            if key in document:
                setattr(instance, key, document[key])
        return web.json_response({"ok": True})

    async def delete_instance(self, request: web.Request) -> web.Response:
        if not self.sim.delete_instance(request.match_info["instance_id"]):
            return web.json_response({"error": "no such instance"}, status=404)
        return web.json_response({"ok": True})

    async def revoke_tokens(self, request: web.Request) -> web.Response:
        self.sim.issued_tokens.clear()
        return web.json_response({"ok": True})

    async def token_ttl(self, request: web.Request) -> web.Response:
        self.sim.token_ttl = float((await request.json())["seconds"])
        return web.json_response({"ok": True})
