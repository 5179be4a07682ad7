"""A fake of the HTAP session API and of IAM's token API, for the demo, tests and benchmarks.

It follows the spec: the session list at `GET /v3/{project_id}/instances/{instance_id}/htap/process`
with `limit` (1..100) and `offset` validated, `DBS.200022` for an unknown instance, credentials
checked (X-Auth-Token or an SDK-HMAC-SHA256 signature), StarRocks-like rows that change over time.
Discovery's two steps: `GET /v3/{project_id}/instances` (TaurusDB instances, paginated, with a total
count) and `GET /v3/{project_id}/instances/{taurus_id}/htap` (its HTAP instances). Each HTAP
instance belongs to a TaurusDB instance (two per TaurusDB instance by default).
IAM's `POST /v3/auth/tokens` issues tokens for configured users.

A control API under `/_sim/` sets fixed rows, injects faults (per instance, per list call
(`list_instances`, `list_htap`, or one TaurusDB id), or global; switchable while it runs), creates,
changes and deletes instances while it runs, revokes tokens and reports what it saw (request counts
and times, auth failures).

Run alone: `python -m htap_exporter.simulator --listen 127.0.0.1:8081 --instances 5 --write-config sim.yaml`
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import datetime
import hashlib
import json
import random
import secrets
import signal
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from htap_exporter import gcsettings
from htap_exporter.cloud.signing import verify_authorization

SIM_PROJECT_ID = "0123456789abcdef0123456789abcdef"
SIM_TOKEN = "sim-static-token-0000000000000000"
SIM_ACCESS_KEY = "SIMACCESSKEY00000001"
SIM_SECRET_KEY = "simSecretKey0000000000000000000000000001"
SIM_DOMAIN = "sim-domain"
SIM_USER = "sim-user"
SIM_PASSWORD = "sim-password-0001"
FAULT_KINDS = ("status", "throttle", "delay", "garbage", "html", "wrong_shape", "ignore_offset",
               "drop", "oversize", "too_many_rows", "endless", "not_list", "echo", "huge_rows")
# Control-API access is by path only: the simulator is a test fixture, bound to loopback.
CONTROL_PREFIX = "/_sim"

USERS = ["root", "etl_loader", "bi_reader", "analyst", "report_svc", "airflow", "dashboard"]
DATABASES = ["sales", "orders", "dw", "information_schema", "marketing", ""]
COMMANDS = ["Sleep"] * 12 + ["Query"] * 6 + ["Init DB", "Ping", "COM_STMT_EXECUTE", "Field List"]
STATES = ["OK"] * 10 + ["EOF"] * 3 + ["ERR", "NOOP"]
STATEMENTS = [
    "SELECT customer_email, SUM(amount) FROM orders WHERE customer_email = 'alice@example.com' GROUP BY 1",
    "INSERT INTO dw.fact_sales SELECT * FROM ods.sales WHERE dt = '2026-11-29'",
    "SELECT /* dashboard */ count(*) FROM sales.events WHERE ts > now() - interval 1 hour",
    "",
]


def instance_id_for(index: int) -> str:
    digest = hashlib.sha256(f"sim-instance-{index}".encode()).hexdigest()
    return digest[:32] + "in17"


def taurus_id_for(index: int) -> str:
    digest = hashlib.sha256(f"sim-taurus-{index}".encode()).hexdigest()
    return digest[:32] + "in07"


@dataclass
class SimTaurus:
    """A TaurusDB instance: what discovery lists first."""

    id: str
    name: str
    status: str = "normal"


@dataclass
class Fault:
    kind: str
    status: int = 500
    error_code: str = "DBS.05000000"
    error_msg: str = "Internal server error."
    retry_after: str | None = None
    seconds: float = 0.0
    size: int = 9 * 1024 * 1024
    remaining: int | None = None  # None: until cleared
    part: list[int] | None = None  # echo: only [start, end) of each echoed header value and of the body
    # huge_rows, endless: bytes of each row's user, database, host and sql_statement (0: normal rows)
    field_bytes: int = 0

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Fault:
        kind = document.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        fault = cls(kind=kind)
        for key in ("status", "error_code", "error_msg", "retry_after", "seconds", "size", "remaining", "part",
                    "field_bytes"):
            if key in document:
                setattr(fault, key, document[key])
        if kind == "echo" and "status" not in document:
            fault.status, fault.error_code = 400, "DBS.280001"
        if kind == "throttle" and "status" not in document:
            fault.status, fault.error_code = 429, "APIG.0308"
            fault.error_msg = "The throttling threshold has been reached: policy user over ratelimit,limit:10,time:1 minute"
        return fault


@dataclass
class SimInstance:
    id: str
    name: str
    sessions: int
    seed: int
    fixed_rows: list[Any] | None = None
    # Pre-built answers by (offset, limit), for benchmarks: serving 10,000 instances from one
    # process must cost the simulator a dictionary lookup per page, not building the rows.
    static_pages: dict[tuple[int, int], bytes] | None = None

    taurus_id: str | None = None  # None: not listed by discovery
    status: str = "normal"
    frozen: bool = False
    engine_version: str = "3.1.6"
    node_num: int = 3

    def describe(self) -> dict[str, Any]:
        """The instance as step 2 of discovery lists it."""
        return {"id": self.id, "name": self.name, "engine_name": "starrocks", "engine_version": self.engine_version,
                "instance_state": {"instance_status": self.status}, "is_frozen": "true" if self.frozen else "false",
                "node_num": self.node_num, "port": 9030}

    def freeze(self, now: float) -> None:
        """From now on serve this moment's rows, as ready JSON bytes per page of 100."""
        rows = self.rows(now)
        self.static_pages = {
            (offset, 100): json.dumps({"process_list": rows[offset:offset + 100]}).encode()
            for offset in range(0, len(rows) + 1, 100)
        }

    def rows(self, now: float) -> list[dict[str, Any]]:
        if self.fixed_rows is not None:
            return self.fixed_rows
        rng = random.Random(self.seed)
        # The population drifts slowly: a few sessions come and go every minute.
        count = max(1, self.sessions + int(5 * ((now // 60) % 3)) - 5)
        rows = []
        for index in range(count):
            period = rng.choice([30, 120, 600, 3600, 7200])
            phase = rng.uniform(0, period)
            epoch = int((now + phase) // period)
            local = random.Random(hash((self.seed, index, epoch)))
            command = local.choice(COMMANDS)
            rows.append({
                "id": str(1000 + index + 10000 * (epoch % 7)),
                "user": rng.choice(USERS),
                "host": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}:{local.randrange(30000, 65000)}",
                "state": local.choice(STATES),
                "database": rng.choice(DATABASES),
                "sql_statement": local.choice(STATEMENTS) if command != "Sleep" else "",
                "duration": int((now + phase) % period),
                "command": command,
            })
        return rows


@dataclass
class Observed:
    requests: dict[str, int] = field(default_factory=dict)
    request_times: dict[str, list[float]] = field(default_factory=dict)
    auth_failures: int = 0
    auth_failure_times: list[float] = field(default_factory=list)
    iam_requests: int = 0
    tokens_issued: int = 0
    total_requests: int = 0  # session-list requests answered past authentication
    # Every cloud API request (sessions and discovery, not IAM), for rate checks.
    api_request_times: list[float] = field(default_factory=list)
    discovery_requests: dict[str, int] = field(default_factory=dict)

    def api_request(self) -> None:
        self.api_request_times.append(time.time())
        if len(self.api_request_times) > 200_000:
            del self.api_request_times[:100_000]

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


class Simulator:
    def __init__(self, *, project_id: str = SIM_PROJECT_ID, instances: int = 5, sessions: int = 60,
                 token_ttl: float = 24 * 3600.0, seed: int = 1, first_index: int = 0,
                 sessions_spread: int | None = None) -> None:
        """Instance i has `sessions + 37 * i` sessions, or with `sessions_spread` a value from
        `sessions` to `sessions + sessions_spread` (a big fleet of like-sized instances)."""
        self.project_id = project_id
        self.instances: dict[str, SimInstance] = {}
        self.taurus: dict[str, SimTaurus] = {}
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
        self.faults: dict[str, Fault] = {}
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
            for child in [i.id for i in self.instances.values() if i.taurus_id == instance_id]:
                del self.instances[child]
            return True
        return self.instances.pop(instance_id, None) is not None

    # --- the cloud API ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/v3/{project_id}/instances/{instance_id}/htap/process", self.list_sessions)
        app.router.add_get("/v3/{project_id}/instances", self.list_taurus)
        app.router.add_get("/v3/{project_id}/instances/{taurus_id}/htap", self.list_htap)
        app.router.add_post("/v3/auth/tokens", self.issue_token)
        app.router.add_get(CONTROL_PREFIX + "/state", self.control_state)
        app.router.add_get(CONTROL_PREFIX + "/totals", self.control_totals)
        app.router.add_get(CONTROL_PREFIX + "/arrivals", self.control_arrivals)
        app.router.add_put(CONTROL_PREFIX + "/faults/{target}", self.control_set_fault)
        app.router.add_delete(CONTROL_PREFIX + "/faults/{target}", self.control_clear_fault)
        app.router.add_delete(CONTROL_PREFIX + "/faults", self.control_clear_faults)
        app.router.add_put(CONTROL_PREFIX + "/instances/{instance_id}/sessions", self.control_set_rows)
        app.router.add_post(CONTROL_PREFIX + "/instances", self.control_create_instance)
        app.router.add_patch(CONTROL_PREFIX + "/instances/{instance_id}", self.control_change_instance)
        app.router.add_delete(CONTROL_PREFIX + "/instances/{instance_id}", self.control_delete_instance)
        app.router.add_post(CONTROL_PREFIX + "/tokens/revoke", self.control_revoke_tokens)
        app.router.add_put(CONTROL_PREFIX + "/token_ttl", self.control_token_ttl)
        return app

    def _authenticate(self, request: web.Request, project_id: str) -> str | None:
        """None if the caller may proceed, else why not."""
        token = request.headers.get("X-Auth-Token")
        if token is not None:
            if token in self.static_tokens:
                return None
            issued = self.issued_tokens.get(token)
            if issued is None:
                return "decrypt token fail"
            scope, expires = issued
            if time.time() >= expires:
                return "token expires"
            if scope != project_id:
                return "token is not scoped to this project"
            return None
        if "Authorization" not in request.headers:
            return "x-auth-token not found"
        body = b""
        reason = verify_authorization(method=request.method, path=request.rel_url.raw_path,
                                      query_pairs=list(request.query.items()), headers=request.headers,
                                      body=body, secret_for=self.keys.get,
                                      now=datetime.datetime.now(datetime.timezone.utc))
        if reason is not None:
            return f"verify aksk signature fail: {reason}"
        return None

    async def list_sessions(self, request: web.Request) -> web.StreamResponse:
        project_id = request.match_info["project_id"]
        instance_id = request.match_info["instance_id"]
        problem = self._authenticate(request, project_id)
        if problem is not None:
            self.observed.auth_failed()
            return _error(401, "APIG.0301", f"Incorrect IAM authentication information: {problem}")
        self.observed.request(instance_id)
        self.observed.api_request()
        window = _page_window(request)
        if isinstance(window, web.Response):
            return window
        limit, offset = window
        instance = self.instances.get(instance_id)
        if project_id != self.project_id or instance is None:
            return _error(400, "DBS.200022", "Instance not found.")
        fault = self._fault_for(instance_id)
        if fault is not None:
            answer = await self._faulty_answer(fault, request, instance, limit, offset)
            if answer is not None:
                return answer
        if instance.static_pages is not None and instance.fixed_rows is None:
            page = instance.static_pages.get((offset, limit))
            if page is not None:
                return web.Response(body=page, content_type="application/json")
        rows = instance.rows(time.time())
        return web.json_response({"process_list": rows[offset:offset + limit]})

    async def list_taurus(self, request: web.Request) -> web.StreamResponse:
        """Step 1 of discovery: the project's TaurusDB instances, a page at a time."""
        problem = self._authenticate(request, request.match_info["project_id"])
        if problem is not None:
            self.observed.auth_failed()
            return _error(401, "APIG.0301", f"Incorrect IAM authentication information: {problem}")
        self.observed.discovery_request("list_instances")
        window = _page_window(request)
        if isinstance(window, web.Response):
            return window
        limit, offset = window
        if request.match_info["project_id"] != self.project_id:
            return _error(403, "DBS.200023", "The project does not match the credentials.")
        fault = self._fault_for("list_instances")
        if fault is not None and fault.kind in ("status", "throttle"):
            return _error(fault.status, fault.error_code, fault.error_msg)
        if fault is not None and fault.kind == "garbage":
            return web.Response(body=b'{"instances": [', content_type="application/json")
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        taurus = list(self.taurus.values())
        page = [{"id": t.id, "name": t.name, "status": t.status, "type": "Cluster",
                 "datastore": {"type": "gaussdb-mysql", "version": "8.0"}} for t in taurus[offset:offset + limit]]
        return web.json_response({"instances": page, "total_count": len(taurus)})

    async def list_htap(self, request: web.Request) -> web.StreamResponse:
        """Step 2 of discovery: the HTAP instances of one TaurusDB instance."""
        problem = self._authenticate(request, request.match_info["project_id"])
        if problem is not None:
            self.observed.auth_failed()
            return _error(401, "APIG.0301", f"Incorrect IAM authentication information: {problem}")
        taurus_id = request.match_info["taurus_id"]
        self.observed.discovery_request("list_htap")
        fault = self._fault_for(taurus_id) or self._fault_for("list_htap")
        if fault is not None and fault.kind in ("status", "throttle"):
            return _error(fault.status, fault.error_code, fault.error_msg)
        if fault is not None and fault.kind == "wrong_shape":
            return web.json_response({"htap": []})
        if request.match_info["project_id"] != self.project_id or taurus_id not in self.taurus:
            return _error(400, "DBS.200022", "Instance not found.")
        children = [i.describe() for i in self.instances.values() if i.taurus_id == taurus_id]
        return web.json_response({"total": len(children), "instances": children})

    def _fault_for(self, target: str) -> Fault | None:
        for key in (target, "*"):
            fault = self.faults.get(key)
            if fault is not None:
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        del self.faults[key]
                return fault
        return None

    async def _faulty_answer(self, fault: Fault, request: web.Request, instance: SimInstance, limit: int,
                             offset: int) -> web.StreamResponse | None:
        kind = fault.kind
        if kind == "status":
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            return _error(fault.status, fault.error_code, fault.error_msg, headers)
        if kind == "throttle":
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            return _error(fault.status, fault.error_code, fault.error_msg, headers)
        if kind == "delay":
            await asyncio.sleep(fault.seconds)
            return None
        if kind == "garbage":
            return web.Response(body=b'{"process_list": [{"id": "1", "user": ', content_type="application/json")
        if kind == "html":
            return web.Response(status=fault.status if fault.status != 500 else 502,
                                text="<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
                                content_type="text/html")
        if kind == "wrong_shape":
            return web.json_response({"processes": []})
        if kind == "not_list":
            return web.json_response({"process_list": {"id": "1"}})
        if kind == "ignore_offset":
            rows = instance.rows(time.time())
            return web.json_response({"process_list": rows[:limit]})
        if kind == "too_many_rows":
            return web.json_response({"process_list": [{"id": str(i), "command": "Sleep", "duration": 1}
                                                       for i in range(limit + 1)]})
        if kind == "endless":  # never a short page, never a repeated id
            if fault.field_bytes:
                return web.Response(body=_padded_page(offset, limit, fault.field_bytes),
                                    content_type="application/json")
            return web.json_response({"process_list": [{"id": str(offset + i), "command": "Sleep", "duration": 1}
                                                       for i in range(limit)]})
        if kind == "huge_rows":  # the instance's own rows, every text field `field_bytes` long
            rows = instance.rows(time.time())[offset:offset + limit]
            return web.json_response({"process_list": [_padded_row(row, fault.field_bytes) for row in rows]})
        if kind == "oversize":
            padding = "x" * max(0, fault.size)
            return web.Response(body=json.dumps({"process_list": [], "padding": padding}).encode(),
                                content_type="application/json")
        if kind == "echo":
            return await _echo(request, fault)
        if kind == "drop":
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError()
        return None

    async def issue_token(self, request: web.Request) -> web.Response:
        self.observed.iam_requests += 1
        fault = self._fault_for("iam")
        if fault is not None and fault.kind == "status":
            return _error(fault.status, fault.error_code, fault.error_msg)
        if fault is not None and fault.kind == "echo":
            return await _echo(request, fault)
        try:
            document = await request.json()
            identity = document["auth"]["identity"]
            user = identity["password"]["user"]
            name, password, domain = user["name"], user["password"], user["domain"]["name"]
            project_id = document["auth"]["scope"]["project"]["id"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "IAM.0007", "Request body is invalid.")
        if "password" not in identity.get("methods", []):
            return _error(400, "IAM.0007", "Request body is invalid.")
        if self.users.get((domain, name)) != password:
            self.observed.auth_failed()
            return _error(401, "IAM.0004", "The username or password is wrong.")
        token = "MIIsim" + secrets.token_urlsafe(48)
        expires = time.time() + self.token_ttl
        self.issued_tokens[token] = (project_id, expires)
        self.observed.tokens_issued += 1
        expires_at = datetime.datetime.fromtimestamp(expires, tz=datetime.timezone.utc)
        body = {"token": {"expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                          "methods": ["password"], "project": {"id": project_id}}}
        return web.json_response(body, status=201, headers={"X-Subject-Token": token})

    # --- control API ---------------------------------------------------------------------------

    async def control_totals(self, request: web.Request) -> web.Response:
        """Small enough to ask often with 10,000 instances (state lists every request time)."""
        return web.json_response({"requests": self.observed.total_requests,
                                  "auth_failures": self.observed.auth_failures,
                                  "instances": len(self.instances),
                                  # pages one poll of every instance reads (static pages only)
                                  "pages_per_round": sum(len(i.static_pages or ()) for i in self.instances.values())})

    async def control_arrivals(self, request: web.Request) -> web.Response:
        """When the cloud API requests arrived (unix time), from `?since=` on: a client's pauses
        show as gaps between them (the benchmark's measure of how long a scrape stalls polling)."""
        try:
            since = float(request.query.get("since", "0"))
        except ValueError:
            return _error(400, "SIM.0001", "since must be a number")
        times = self.observed.api_request_times
        return web.json_response(times[bisect.bisect_left(times, since):])

    async def control_state(self, request: web.Request) -> web.Response:
        observed = self.observed
        return web.json_response({
            "requests": observed.requests,
            "request_times": observed.request_times,
            "auth_failures": observed.auth_failures,
            "auth_failure_times": observed.auth_failure_times,
            "iam_requests": observed.iam_requests,
            "tokens_issued": observed.tokens_issued,
            "instances": {i.id: i.name for i in self.instances.values()},
            "taurus_instances": {t.id: t.name for t in self.taurus.values()},
            "discovery_requests": observed.discovery_requests,
            "faults": {target: fault.kind for target, fault in self.faults.items()},
        })

    async def control_set_fault(self, request: web.Request) -> web.Response:
        try:
            fault = Fault.from_json(await request.json())
        except (ValueError, TypeError) as problem:
            return web.json_response({"error": str(problem)}, status=400)
        self.faults[request.match_info["target"]] = fault
        return web.json_response({"ok": True})

    async def control_clear_fault(self, request: web.Request) -> web.Response:
        self.faults.pop(request.match_info["target"], None)
        return web.json_response({"ok": True})

    async def control_clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"ok": True})

    async def control_set_rows(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        rows = await request.json()
        instance = self.instances.get(instance_id) or self.add_instance(instance_id, instance_id)
        instance.fixed_rows = rows
        return web.json_response({"ok": True})

    async def control_create_instance(self, request: web.Request) -> web.Response:
        """Body: {"name", optional "taurus_id", "status", "frozen", "sessions"}."""
        try:
            document = await request.json()
            instance = self.create_instance(str(document["name"]), taurus_id=document.get("taurus_id"),
                                            status=str(document.get("status", "normal")),
                                            frozen=bool(document.get("frozen", False)),
                                            sessions=int(document.get("sessions", 60)))
        except (ValueError, KeyError, TypeError) as problem:
            return web.json_response({"error": f"bad request: {problem!r}"}, status=400)
        return web.json_response({"id": instance.id, "taurus_id": instance.taurus_id}, status=201)

    async def control_change_instance(self, request: web.Request) -> web.Response:
        """Body: any of {"name", "status", "frozen"}."""
        instance = self.instances.get(request.match_info["instance_id"])
        if instance is None:
            return web.json_response({"error": "no such instance"}, status=404)
        document = await request.json()
        for key in ("name", "status", "frozen"):
            if key in document:
                setattr(instance, key, document[key])
        return web.json_response({"ok": True})

    async def control_delete_instance(self, request: web.Request) -> web.Response:
        if not self.delete_instance(request.match_info["instance_id"]):
            return web.json_response({"error": "no such instance"}, status=404)
        return web.json_response({"ok": True})

    async def control_revoke_tokens(self, request: web.Request) -> web.Response:
        self.issued_tokens.clear()
        return web.json_response({"ok": True})

    async def control_token_ttl(self, request: web.Request) -> web.Response:
        self.token_ttl = float((await request.json())["seconds"])
        return web.json_response({"ok": True})


async def _echo(request: web.Request, fault: Fault) -> web.Response:
    """Like a careless gateway: the request's headers and body reflected in error_msg, as JSON text
    (so a secret arrives JSON-escaped), or only a slice of each when `part` is set."""
    headers = dict(request.headers)
    body = (await request.read()).decode("utf-8", errors="replace")
    if fault.part is not None:
        start, end = fault.part
        headers = {name: text[start:end] for name, text in headers.items()}
        body = body[start:end]
    echoed = json.dumps({"body": body, "headers": headers, "method": request.method, "path": request.path_qs})
    return _error(fault.status, fault.error_code, f"Bad request: {echoed}")


def _padded_row(row: dict[str, Any], size: int) -> dict[str, Any]:
    """The row with its text fields grown to `size` characters; the original value stays at the end,
    so rows that differed still differ (e.g. two users stay two users after cutting)."""
    padded = dict(row)
    for key in ("user", "database", "host", "sql_statement"):
        tail = str(row.get(key, ""))
        padded[key] = "x" * max(0, size - len(tail)) + tail
    return padded


def _padded_page(offset: int, limit: int, size: int) -> bytes:
    padding = "p" * size
    rows = [{"id": str(offset + i), "user": padding + str(offset + i), "database": padding,
             "host": padding, "sql_statement": padding, "command": "Query", "duration": 1} for i in range(limit)]
    return json.dumps({"process_list": rows}).encode()


def _page_window(request: web.Request) -> tuple[int, int] | web.Response:
    """The request's `limit` and `offset`, validated as the API does, or its 400 answer."""
    try:
        limit = int(request.query.get("limit", "100"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        return _error(400, "DBS.200001", "Invalid parameter: limit and offset must be integers.")
    if not 1 <= limit <= 100 or offset < 0:
        return _error(400, "DBS.200001", "Invalid parameter: limit must be 1-100, offset >= 0.")
    return limit, offset


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error_code": code, "error_msg": message}, status=status, headers=headers)


def sample_config(simulator: Simulator, base_url: str, *, auth: str = "token", interval: str = "15s",
                  discovery: bool = False) -> str:
    """A config file that polls every instance of `simulator` at `base_url`: listed, or found by
    discovery (refreshed every 30 s)."""
    auth_block = {
        "token": f"      type: token\n      token: {SIM_TOKEN}\n",
        "aksk": f"      type: aksk\n      access_key: {SIM_ACCESS_KEY}\n      secret_key: {SIM_SECRET_KEY}\n",
        "password": (f"      type: password\n      domain: {SIM_DOMAIN}\n      username: {SIM_USER}\n"
                     f"      password: {SIM_PASSWORD}\n"),
    }[auth]
    if discovery:
        instances = "    discovery:\n      enabled: true\n      refresh_interval: 30s\n"
    else:
        instances = "    instances:\n" + "".join(f"      - id: {i.id}\n        name: {i.name}\n"
                                                for i in simulator.instances.values())
    return (
        f"# Polls the built-in simulator at {base_url}.\n"
        f"poll:\n  interval: {interval}\n  timeout: 5s\n"
        "projects:\n"
        f"  - project_id: {simulator.project_id}\n"
        "    region: cn-north-4\n"
        f"    endpoint: {base_url}\n"
        f"    iam_endpoint: {base_url}\n"
        f"    auth:\n{auth_block}"
        f"{instances}"
    )


async def start(simulator: Simulator, host: str = "127.0.0.1", port: int = 0,
                ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, str]:
    """Serve `simulator` on host:port (0: any free port), over TLS with `ssl_context`; returns the
    runner and the base URL."""
    runner = web.AppRunner(simulator.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
    bound_port = sockets[0].getsockname()[1]
    return runner, f"{'https' if ssl_context is not None else 'http'}://{host}:{bound_port}"


async def _serve(args: argparse.Namespace) -> None:
    simulator = Simulator(instances=args.instances, sessions=args.sessions, sessions_spread=args.sessions_spread)
    if args.delay:
        simulator.faults["*"] = Fault(kind="delay", seconds=args.delay)
    if args.static:
        simulator.freeze(time.time())
    host, _, port = args.listen.rpartition(":")
    runner, base_url = await start(simulator, host or "127.0.0.1", int(port))
    if args.write_config:
        with open(args.write_config, "w", encoding="utf-8") as out:
            out.write(sample_config(simulator, base_url, auth=args.auth, discovery=args.discovery))
    print(f"simulator listening on {base_url} with {len(simulator.instances)} instances", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m htap_exporter.simulator",
                                     description="Fake HTAP session API and IAM for demos and tests.")
    parser.add_argument("--listen", default="127.0.0.1:8081", help="host:port (port 0: any free port)")
    parser.add_argument("--instances", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=60, help="sessions on the first instance")
    parser.add_argument("--sessions-spread", type=int, metavar="N",
                        help="instead of growing by 37 per instance, sessions vary from --sessions to --sessions+N")
    parser.add_argument("--delay", type=float, default=0.0, metavar="SECONDS",
                        help="answer every session-list request this much later (a server's latency)")
    parser.add_argument("--static", action="store_true",
                        help="build every page once at start and serve those bytes (cheap enough for"
                             " 10,000 instances; for benchmarks)")
    parser.add_argument("--auth", choices=["token", "aksk", "password"], default="token",
                        help="auth type written into --write-config")
    parser.add_argument("--write-config", metavar="PATH", help="write an exporter config for this simulator")
    parser.add_argument("--discovery", action="store_true",
                        help="the written config discovers the instances instead of listing them")
    args = parser.parse_args(argv)
    gcsettings.configure()  # the benchmark's simulator holds 10,000 instances' pages: see gcsettings
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
