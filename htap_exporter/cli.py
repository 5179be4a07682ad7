"""Command line, logging, signals and wiring. The only place where errors become user-facing lines."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from htap_exporter import __version__, gcsettings, version_text
from htap_exporter.clock import Clock
from htap_exporter.cloud.clients import ClientFactory
from htap_exporter.collectors.registry import CollectorSet, all_families
from htap_exporter.config import Config, ConfigError, load_config, parse_config, parse_duration
from htap_exporter.exposition.families import Layouts
from htap_exporter.exposition.selfmetrics import SelfMetrics
from htap_exporter.exposition.store import Store
from htap_exporter.fleet.fleet import Fleet
from htap_exporter.fleet.sharding import Shard, ordinal_from_hostname
from htap_exporter.logs import setup_logging
from htap_exporter.redact import Redactor
from htap_exporter.runtime.scheduler import Scheduler
from htap_exporter.runtime.state import layout_families
from htap_exporter.web.access import WebAccess
from htap_exporter.web.guards import ConnectionGuard, GuardedSite, GuardLimits, connection_cap, raise_open_file_limit
from htap_exporter.web.sending import BodySender
from htap_exporter.web.server import ServerState, make_app
from htap_exporter.web.webconfig import RotatingSSLContext, WebConfigWatcher

DEFAULT_LISTEN = ":9978"
# The demo is for trying the exporter on one's own machine, and its POST /-/reload is open: it stays
# on loopback unless --web.listen-address says otherwise.
DEMO_LISTEN = "127.0.0.1:9978"
# In-flight scrapes get this long to finish on SIGTERM; polls are cancelled at once.
SHUTDOWN_GRACE = 3.0
TELEMETRY_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]*")
RESERVED_PATHS = frozenset({"/", "/-/healthy", "/-/ready", "/-/reload"})
DEMO_INSTANCES = 5
DEMO_INTERVAL = "5s"

log = logging.getLogger("htap_exporter")


def parse_listen_address(text: str) -> tuple[str | None, int]:
    """`[HOST]:PORT` -> (host or None for every interface, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--web.listen-address {text!r}: expected [HOST]:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host or None), int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="htap-exporter",
        description="Prometheus exporter for the sessions of Huawei Cloud TaurusDB HTAP instances.")
    parser.add_argument("--config.file", dest="config_file", default=None, metavar="PATH",
                        help="configuration file (default: config.yaml)")
    parser.add_argument("--config.check", dest="config_check", action="store_true",
                        help="validate the configuration, print a summary with secrets masked, and exit")
    parser.add_argument("--web.listen-address", dest="listen", action="append", metavar="[HOST]:PORT",
                        help=f"address to listen on, repeatable (default: {DEFAULT_LISTEN}, or"
                             f" {DEMO_LISTEN} in demo mode)")
    parser.add_argument("--web.config.file", dest="web_config_file", metavar="PATH",
                        help="exporter-toolkit web config: TLS, client certificates, basic auth, headers")
    parser.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", metavar="PATH",
                        help="path under which to expose metrics (default: /metrics)")
    parser.add_argument("--log.level", dest="log_level", default="info", choices=["debug", "info", "warn", "error"],
                        help="only log messages of this level or above (default: info)")
    parser.add_argument("--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"],
                        help="log line format on stderr, every field its own key (default: logfmt)")
    parser.add_argument("--web.read-timeout", dest="read_timeout", default="10s", metavar="DURATION",
                        help="time a client has to send a request's headers; also how long an idle"
                             " keep-alive connection stays open (default: 10s)")
    parser.add_argument("--web.max-connections", dest="max_connections", default=512, type=int, metavar="N",
                        help="connections served at once; beyond it the oldest idle one is closed, or the new"
                             " one refused with 503 (default: 512)")
    parser.add_argument("--demo", action="store_true",
                        help="start the built-in API simulator on loopback and poll it (no credentials needed);"
                             f" listens on {DEMO_LISTEN} unless --web.listen-address is given")
    parser.add_argument("--shard.count", dest="shard_count", type=int, default=1, metavar="N",
                        help="number of replicas sharing the instances, at most 1000 (default: 1)")
    parser.add_argument("--shard.index", dest="shard_index", type=int, default=None, metavar="K",
                        help="this replica's share, 0..N-1 (default: 0)")
    parser.add_argument("--shard.index-from-hostname", dest="shard_from_hostname", action="store_true",
                        help="take the shard index from the hostname's trailing -NUMBER (a StatefulSet pod ordinal)")
    parser.add_argument("--version", action="store_true",
                        help="print the version, the git revision, the Python version and the platform, and exit")
    return parser


def shard_from_args(args: argparse.Namespace, hostname: str | None = None) -> Shard:
    """The replica's shard; ValueError with the user-facing reason."""
    if args.shard_from_hostname:
        if args.shard_index is not None:
            raise ValueError("give either --shard.index or --shard.index-from-hostname, not both")
        name = hostname if hostname is not None else socket.gethostname()
        try:
            index = ordinal_from_hostname(name)
        except ValueError as problem:
            raise ValueError(f"--shard.index-from-hostname: {problem}") from None
    else:
        index = args.shard_index if args.shard_index is not None else 0
    try:
        return Shard(index, args.shard_count)
    except ValueError as problem:
        raise ValueError(f"--shard.index/--shard.count: {problem}") from None


def warn_cleartext(config: Config) -> None:
    """Every start (and reload) repeats it: `allow_http` is an exception that must stay visible."""
    for project in config.projects:
        for key, url in project.cleartext_endpoints():
            log.warning("allow_http: credentials and sessions travel unencrypted to a non-loopback host",
                        extra={"project_id": project.project_id, "key": key, "url": url})


@dataclass
class Runtime:
    config_file: str | None  # None in demo mode: nothing to reload from
    config: Config
    fleet: Fleet
    self_metrics: SelfMetrics
    redactor: Redactor
    clock: Clock
    reload_lock: asyncio.Lock

    async def reload(self) -> str | None:
        async with self.reload_lock:
            if self.config_file is None:
                return "the demo has no configuration file to reload"
            try:
                config = load_config(self.config_file)
            except ConfigError as problem:
                log.error("reload failed, keeping the previous configuration",
                          extra={"file": problem.file, "path": problem.path, "error": problem.message})
                self.self_metrics.config_loaded(False, self.clock.time())
                return str(problem)
            except Exception:  # a bug of ours must not take the running configuration down
                log.exception("reload failed, keeping the previous configuration")
                self.self_metrics.config_loaded(False, self.clock.time())
                return "internal error while loading the configuration (see the log)"
            self.redactor.remember("config", *config.secrets())
            warn_cleartext(config)
            effective = await self.fleet.apply(config)
            self.config = config
            self.self_metrics.config_loaded(True, self.clock.time())
            log.info("configuration reloaded", extra={"instances": sum(len(p.instances) for p in effective.projects),
                                                      "projects": len(config.projects)})
            return None


async def serve(args: argparse.Namespace, config: Config, redactor: Redactor,
                demo_runner: web.AppRunner | None = None, hangups: list[int] | None = None,
                web_config: WebConfigWatcher | None = None) -> int:
    """Serve until SIGTERM/SIGINT. `hangups`: SIGHUPs caught before the event loop existed."""
    clock = Clock()
    store = Store(Layouts.of(layout_families(all_families())))
    self_metrics = SelfMetrics()
    # HTTPS_PROXY/HTTP_PROXY/NO_PROXY from the environment, as curl and Go programs do: the client
    # factory reads them once (transport.Proxies); the session's own trust_env would re-read them
    # per request.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                                    headers={"User-Agent": f"htap-exporter/{__version__}"})
    clients = ClientFactory(session=session, clock=clock, redactor=redactor, observe=self_metrics.observe_request)
    scheduler = Scheduler(store=store, clock=clock, clients=clients)
    collectors = CollectorSet(clock.time)

    async def run_fleet(effective: Config) -> None:
        with gcsettings.applying():
            await scheduler.apply(effective, collectors.enabled(effective))

    shard: Shard = getattr(args, "shard", Shard(0, 1))
    fleet = Fleet(clients=clients, on_fleet=run_fleet, clock=clock, registry=self_metrics.registry, shard=shard)
    runtime = Runtime(None if args.demo else args.config_file, config, fleet, self_metrics, redactor, clock,
                      asyncio.Lock())

    async def reload_all() -> str | None:
        # One reload re-reads both files; the web config also re-reads itself when it changes.
        web_problem = await web_config.reload_async() if web_config is not None else None
        problem = await runtime.reload()
        return "; ".join(p for p in (web_problem, problem) if p is not None) or None

    app = make_app(ServerState(store=store, self_metrics=self_metrics, is_ready=scheduler.ready.is_set,
                               reload=reload_all, telemetry_path=args.telemetry_path,
                               access=WebAccess(web_config),
                               sender=BodySender(stall_timeout=args.guard_limits.write_stall_timeout)))
    tls = RotatingSSLContext(web_config) if web_config is not None and web_config.current.tls else None
    guard = ConnectionGuard(args.guard_limits)
    # keepalive_timeout: aiohttp closes idle connections, and stalled follow-up requests, after it.
    # shutdown_timeout: aiohttp waits up to it for a handler, then again after cancelling it: half
    # the grace each, so that a stop never takes longer than the grace (a handler can wait for a
    # bcrypt check, or a client that reads slowly).
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE / 2,
                           keepalive_timeout=args.guard_limits.read_timeout)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    pending_reloads: set[asyncio.Task[str | None]] = set()
    watching = asyncio.create_task(web_config.watch()) if web_config is not None else None

    def on_hangup() -> None:
        task = asyncio.create_task(reload_all())
        pending_reloads.add(task)
        task.add_done_callback(pending_reloads.discard)

    # Before anything that takes time: a SIGHUP while starting must reload, not kill.
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        for address in args.listen or [DEFAULT_LISTEN]:
            host, port = parse_listen_address(address)
            site = GuardedSite(runner, host, port, guard=guard, ssl_context=tls)
            listening = len(runner.addresses)
            try:
                await site.start()
            except OSError as problem:
                log.error("cannot listen", extra={"address": address, "error": problem.strerror or str(problem)})
                return 1
            for bound in runner.addresses[listening:]:  # this site's sockets: the runner lists them in order
                where = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
                log.info("listening on %s", where, extra={"address": where})  # the message stays greppable

        if web_config is not None:
            current = web_config.current
            log.info("web config in force", extra={"file": str(web_config.path), "tls": current.tls is not None,
                                                   "basic_auth_users": len(current.users)})
        async with runtime.reload_lock:  # a SIGHUP during start reloads after it, not beside it
            warn_cleartext(config)
            # The first discovery of a big fleet takes a while (one request per TaurusDB instance):
            # a SIGTERM meanwhile stops the process without waiting for it.
            applying = asyncio.create_task(fleet.apply(config))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait((applying, stopping), return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not applying.done():
                applying.cancel()
                await asyncio.gather(applying, return_exceptions=True)
                log.info("stopping")
                return 0
            effective = applying.result()
            self_metrics.config_loaded(True, clock.time())
        log.info("polling", extra={"instances": sum(len(p.instances) for p in effective.projects),
                                   "projects": len(config.projects), "interval_seconds": config.poll.interval,
                                   "shard_index": shard.index, "shard_count": shard.count})
        if hangups:
            log.info("SIGHUP received while starting: reloading the configuration")
            on_hangup()
        await stop.wait()
        log.info("stopping")
        for task in pending_reloads:
            task.cancel()
        return 0
    finally:
        if watching is not None:
            watching.cancel()
        async with runtime.reload_lock:  # a reload in progress must not start loops after the stop
            await fleet.stop()
            await scheduler.stop()
        await runner.cleanup()
        await session.close()
        if demo_runner is not None:
            await demo_runner.cleanup()


async def serve_demo(args: argparse.Namespace, redactor: Redactor, hangups: list[int] | None = None,
                     web_config: WebConfigWatcher | None = None) -> int:
    from htap_exporter.simulator import Simulator, sample_config, start

    simulator = Simulator(instances=DEMO_INSTANCES)
    demo_runner, base_url = await start(simulator)
    config = parse_config(sample_config(simulator, base_url, interval=DEMO_INTERVAL, discovery=True, collectors=True),
                          file="demo")
    log.info("demo: simulator started", extra={"instances": DEMO_INSTANCES, "url": base_url})
    return await serve(args, config, redactor, demo_runner, hangups, web_config)


def check_flags(args: argparse.Namespace) -> float:
    """The flags' values that argparse cannot check; sets `args.shard` and returns the read timeout
    in seconds. ValueError: the flag and its problem, in one line."""
    for address in args.listen or []:
        parse_listen_address(address)
    args.shard = shard_from_args(args)
    if not TELEMETRY_PATH_RE.fullmatch(args.telemetry_path) or args.telemetry_path in RESERVED_PATHS:
        raise ValueError(f"--web.telemetry-path {args.telemetry_path!r}: must be a plain path starting"
                         f" with / other than {', '.join(sorted(RESERVED_PATHS))}")
    try:
        read_timeout = parse_duration(args.read_timeout)
    except ValueError as problem:
        raise ValueError(f"--web.read-timeout {args.read_timeout!r}: {problem}") from None
    if args.max_connections < 1:
        raise ValueError(f"--web.max-connections {args.max_connections}: must be at least 1")
    return read_timeout


def fit_connections(wanted: int) -> int:
    """--web.max-connections, lowered if the open file limit (raised to its hard limit) is lower."""
    before, open_files = raise_open_file_limit()
    if open_files != before:
        log.info("open file limit raised to the hard limit", extra={"from": before, "to": open_files})
    max_connections = connection_cap(wanted, open_files)
    if max_connections < wanted:
        log.warning("--web.max-connections lowered to fit the open file limit",
                    extra={"max_connections": max_connections, "open_file_limit": open_files})
    return max_connections


def main(argv: list[str] | None = None, hangups: list[int] | None = None) -> int:
    """The command. `hangups` collects SIGHUPs from a handler installed before this module was
    imported (see __main__), so that one arriving during start-up is not fatal."""
    args = build_parser().parse_args(argv)
    config_file_given = args.config_file is not None
    if not config_file_given:
        args.config_file = "config.yaml"
    if args.version:
        print(version_text())
        return 0
    redactor = Redactor()
    setup_logging(args.log_level, args.log_format, redactor)
    if args.demo and not args.listen:
        args.listen = [DEMO_LISTEN]
    try:
        read_timeout = check_flags(args)
    except ValueError as problem:
        print(f"htap-exporter: {problem}", file=sys.stderr)
        return 1
    web_config = None
    if args.web_config_file:
        try:
            web_config = WebConfigWatcher(args.web_config_file)
        except ConfigError as problem:
            print(f"htap-exporter: {problem}", file=sys.stderr)
            return 1
    config = None
    if not args.demo or args.config_check:
        try:
            config = load_config(Path(args.config_file))
        except ConfigError as problem:
            hint = ""
            if problem.message == "file not found" and not config_file_given:  # most likely a first run
                hint = " (give one with --config.file PATH, or try --demo for the built-in simulator)"
            print(f"htap-exporter: {problem}{hint}", file=sys.stderr)
            return 1
        redactor.remember("config", *config.secrets())
        if args.config_check:
            print(config.summary())
            if web_config is not None:
                print(web_config.current.summary())
            warn_cleartext(config)
            return 0
    args.guard_limits = GuardLimits(read_timeout=read_timeout, max_connections=fit_connections(args.max_connections))
    gcsettings.configure()
    try:
        if args.demo:
            return asyncio.run(serve_demo(args, redactor, hangups, web_config))
        assert config is not None
        return asyncio.run(serve(args, config, redactor, hangups=hangups, web_config=web_config))
    except KeyboardInterrupt:
        return 0
