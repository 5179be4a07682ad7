"""Command line, logging, signals and wiring. The only place where errors become user-facing lines."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import math
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from exporter import __version__
from exporter.clock import Clock
from exporter.config import Config, ConfigError, load_config, parse_config
from exporter.metrics import SelfMetrics
from exporter.poller import Poller
from exporter.redact import Redactor
from exporter.server import ServerState, make_app
from exporter.store import Store

DEFAULT_LISTEN = ":9978"
# In-flight scrapes get this long to finish on SIGTERM; polls are cancelled at once.
SHUTDOWN_GRACE = 3.0
TELEMETRY_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]*")
RESERVED_PATHS = frozenset({"/", "/-/healthy", "/-/ready", "/-/reload"})
DEMO_INSTANCES = 5
DEMO_INTERVAL = "5s"

log = logging.getLogger("exporter")


# Attributes every LogRecord has; anything else on a record came in through `extra=` and is a field.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_RESERVED_KEYS = ("ts", "level", "logger", "msg")


def log_fields(record: logging.LogRecord) -> list[tuple[str, object]]:
    """ts, level, logger, msg, then every `extra=` field as its own key, then the traceback."""
    fields: list[tuple[str, object]] = [
        ("ts", _timestamp(record)),
        ("level", _level(record)),
        ("logger", record.name),
        ("msg", record.getMessage()),
    ]
    for key, value in record.__dict__.items():
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
            fields.append((f"field_{key}" if key in _RESERVED_KEYS else key, value))
    traceback = record.exc_text
    if record.exc_info:
        traceback = logging.Formatter().formatException(record.exc_info)
    if traceback:
        # "error" is the usual key of a failure's text; a traceback next to one gets its own key.
        fields.append(("traceback" if any(key == "error" for key, _ in fields) else "error", traceback))
    return fields


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(_text(value))}" for key, value in log_fields(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {key: value if _json_plain(value) else _text(value) for key, value in log_fields(record)}
        return json.dumps(document)


def _json_plain(value: object) -> bool:
    """Numbers, booleans and null stay JSON values; everything else becomes a string."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (int, bool, type(None)))


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.datetime.fromtimestamp(record.created, tz=datetime.timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _level(record: logging.LogRecord) -> str:
    return {"WARNING": "warn", "CRITICAL": "error"}.get(record.levelname, record.levelname.lower())


def _logfmt_value(value: str) -> str:
    if value and all(c.isalnum() or c in "-._:/@+" for c in value):
        return value
    # JSON string quoting escapes quotes, backslashes and every control character (a server's
    # error text must not be able to forge a log line or a terminal escape).
    return json.dumps(value, ensure_ascii=False)


def setup_logging(level: str, fmt: str, redactor: Redactor) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
                   "error": logging.ERROR}[level])


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
    parser.add_argument("--config.file", dest="config_file", default="config.yaml", metavar="PATH",
                        help="configuration file (default: config.yaml)")
    parser.add_argument("--config.check", dest="config_check", action="store_true",
                        help="validate the configuration, print a summary with secrets masked, and exit")
    parser.add_argument("--web.listen-address", dest="listen", action="append", metavar="[HOST]:PORT",
                        help=f"address to listen on, repeatable (default: {DEFAULT_LISTEN})")
    parser.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", metavar="PATH",
                        help="path under which to expose metrics (default: /metrics)")
    parser.add_argument("--log.level", dest="log_level", default="info", choices=["debug", "info", "warn", "error"])
    parser.add_argument("--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"])
    parser.add_argument("--demo", action="store_true",
                        help="start the built-in API simulator on loopback and poll it (no credentials needed)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


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
    poller: Poller
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
            for secret in config.secrets():
                self.redactor.add(secret)
            warn_cleartext(config)
            await self.poller.apply(config)
            self.config = config
            self.self_metrics.config_loaded(True, self.clock.time())
            log.info("configuration reloaded", extra={"instances": sum(len(p.instances) for p in config.projects),
                                                      "projects": len(config.projects)})
            return None


async def serve(args: argparse.Namespace, config: Config, redactor: Redactor,
                demo_runner: web.AppRunner | None = None) -> int:
    clock = Clock()
    store = Store()
    self_metrics = SelfMetrics()
    # trust_env: HTTPS_PROXY/HTTP_PROXY/NO_PROXY from the environment, as curl and Go programs do.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                                    headers={"User-Agent": f"htap-exporter/{__version__}"}, trust_env=True)
    poller = Poller(session=session, store=store, clock=clock, redactor=redactor,
                    observe=self_metrics.observe_request)
    runtime = Runtime(None if args.demo else args.config_file, config, poller, self_metrics, redactor, clock,
                      asyncio.Lock())
    app = make_app(ServerState(store=store, self_metrics=self_metrics, is_ready=poller.ready.is_set,
                               reload=runtime.reload, telemetry_path=args.telemetry_path))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE)
    await runner.setup()
    try:
        for address in args.listen or [DEFAULT_LISTEN]:
            host, port = parse_listen_address(address)
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as problem:
                log.error("cannot listen", extra={"address": address, "error": problem.strerror or str(problem)})
                return 1
            server = site._server
            for sock in (server.sockets if server is not None else []):  # type: ignore[union-attr]
                bound = sock.getsockname()
                where = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
                log.info("listening on %s", where, extra={"address": where})  # the message stays greppable

        warn_cleartext(config)
        await poller.apply(config)
        self_metrics.config_loaded(True, clock.time())
        log.info("polling", extra={"instances": sum(len(p.instances) for p in config.projects),
                                   "projects": len(config.projects), "interval_seconds": config.poll.interval})

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        pending_reloads: set[asyncio.Task[str | None]] = set()

        def on_hangup() -> None:
            task = asyncio.create_task(runtime.reload())
            pending_reloads.add(task)
            task.add_done_callback(pending_reloads.discard)

        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        await stop.wait()
        log.info("stopping")
        for task in pending_reloads:
            task.cancel()
        return 0
    finally:
        async with runtime.reload_lock:  # a reload in progress must not start loops after the stop
            await poller.stop()
        await runner.cleanup()
        await session.close()
        if demo_runner is not None:
            await demo_runner.cleanup()


async def serve_demo(args: argparse.Namespace, redactor: Redactor) -> int:
    from exporter.simulator import Simulator, sample_config, start

    simulator = Simulator(instances=DEMO_INSTANCES)
    demo_runner, base_url = await start(simulator)
    config = parse_config(sample_config(simulator, base_url, interval=DEMO_INTERVAL), file="demo")
    log.info("demo: simulator started", extra={"instances": DEMO_INSTANCES, "url": base_url})
    return await serve(args, config, redactor, demo_runner)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.version:
        print(f"htap-exporter {__version__}")
        return 0
    redactor = Redactor()
    setup_logging(args.log_level, args.log_format, redactor)
    try:
        for address in args.listen or []:
            parse_listen_address(address)
    except ValueError as problem:
        print(f"htap-exporter: {problem}", file=sys.stderr)
        return 1
    if not TELEMETRY_PATH_RE.fullmatch(args.telemetry_path) or args.telemetry_path in RESERVED_PATHS:
        print(f"htap-exporter: --web.telemetry-path {args.telemetry_path!r}: must be a plain path starting"
              f" with / other than {', '.join(sorted(RESERVED_PATHS))}", file=sys.stderr)
        return 1
    config = None
    if not args.demo or args.config_check:
        try:
            config = load_config(Path(args.config_file))
        except ConfigError as problem:
            print(f"htap-exporter: {problem}", file=sys.stderr)
            return 1
        for secret in config.secrets():
            redactor.add(secret)
        if args.config_check:
            print(config.summary())
            warn_cleartext(config)
            return 0
    try:
        if args.demo:
            return asyncio.run(serve_demo(args, redactor))
        assert config is not None
        return asyncio.run(serve(args, config, redactor))
    except KeyboardInterrupt:
        return 0
