"""A fake of the HTAP cloud API and of IAM's token API, for the demo, tests and benchmarks.

It follows the spec: the session list (`sessions_api`), discovery's two steps (`discovery_api`),
IAM's token request (`iam`), credentials checked by one middleware (X-Auth-Token or an
SDK-HMAC-SHA256 signature), StarRocks-like rows that change over time (`instances`). Each HTAP
instance belongs to a TaurusDB instance (two per TaurusDB instance by default). A control API
under `/_sim/` (`control`) sets fixed rows, injects faults (`faults`), changes the instances and
reports what the simulator saw.

An API family is a module with `apis(sim) -> list[Api]`, registered in `Simulator.app`; the
middleware, the counters and the fault table apply to it without more.

Run alone: `python -m htap_exporter.simulator --listen 127.0.0.1:8081 --instances 5 --write-config sim.yaml`
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
import time

from aiohttp import web

from htap_exporter import gcsettings
from htap_exporter.simulator import discovery_api, iam, middleware, sessions_api, starrocks_api
from htap_exporter.simulator.control import Control
from htap_exporter.simulator.faults import Fault
from htap_exporter.simulator.routing import Api
from htap_exporter.simulator.state import (SIM_ACCESS_KEY, SIM_DOMAIN, SIM_PASSWORD, SIM_SECRET_KEY, SIM_TOKEN,
                                           SIM_USER, SimState)


class Simulator(SimState):
    """The state, served: the cloud API families behind the middleware, and the control API."""

    def apis(self) -> list[Api]:
        return [*sessions_api.apis(self), *discovery_api.apis(self), *starrocks_api.apis(self), *iam.apis(self)]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.add_routes([middleware.guard(api, self, self._authenticate) for api in self.apis()])
        app.add_routes(Control(self).routes())
        return app

    async def issue_token(self, request: web.Request) -> web.Response:
        return await iam.issue_token(self, request)

    def _authenticate(self, request: web.Request, project_id: str) -> str | None:
        """None if the caller may proceed, else why not."""
        return middleware.authenticate(self, request, project_id)


def sample_config(simulator: SimState, base_url: str, *, auth: str = "token", interval: str = "15s",
                  discovery: bool = False, collectors: bool = False) -> str:
    """A config file that polls every instance of `simulator` at `base_url`: listed, or found by
    discovery (refreshed every 30 s); `collectors`: every collector on, at short intervals."""
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
    collector_block = (
        "collectors:\n"
        "  top_sessions: {enabled: true, count: 5, min_duration: 30s, sql: digest}\n"
        "  replication: {enabled: true, interval: 15s}\n"
        "  nodes: {enabled: true, interval: 15s}\n"
        "  query_queue: {enabled: true, interval: 30s}\n") if collectors else ""
    return (
        f"# Polls the built-in simulator at {base_url}.\n"
        f"poll:\n  interval: {interval}\n  timeout: 5s\n"
        f"{collector_block}"
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
    bound_port = runner.addresses[0][1]
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
