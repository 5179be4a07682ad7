"""YAML config -> frozen, validated dataclasses.

Every problem is a ConfigError naming the file, the key path in it (`projects[0].auth.secret_key`)
and what is wrong; a secret's value never appears in an error. `${VAR}` expands from the
environment (`$${` is a literal `${`); an unset variable is an error naming it.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from yarl import URL

from htap_exporter.config.reader import ConfigError, Reader, load_yaml
from htap_exporter.config.reader import join as _join
from htap_exporter.config.reader import type_name as _type_name
from htap_exporter.config.regions import KNOWN_REGIONS, default_endpoint, default_iam_endpoint, nearest_region
from htap_exporter.config.secrets import FileReadError, Secret, SecretError, SecretSource, ca_context, read_small_file

# Re-exported: config types hold the secrets; ConfigError is what every reader here raises.
__all__ = ["ConfigError", "Secret", "SecretError", "SecretSource"]

PROJECT_ID_RE = re.compile(r"[0-9A-Za-z]{32}")
# A standard HTAP instance id: 36 letters/digits, the last four being "in17".
INSTANCE_ID_RE = re.compile(r"[0-9A-Za-z]{32}in17")
# The TaurusDB (GaussDB for MySQL) instance an HTAP instance belongs to: the same form, ending "in07".
TAURUS_INSTANCE_ID_RE = re.compile(r"[0-9A-Za-z]{32}in07")
REGION_RE = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")
ENV_RE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# `access_key: $HW_ACCESS_KEY` (no braces) is not expanded: the literal text would be sent as the key.
UNEXPANDED_RE = re.compile(r"\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*")
CONVENTIONAL_ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
LOOPBACK_HOSTS = frozenset({"localhost", "localhost.", "::1", "[::1]"})
MAX_CONFIG_FILE_BYTES = 16 * 1024 * 1024
DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
# Each refresh costs a request per TaurusDB instance: the floor keeps a typo (`5ms`) from turning
# discovery into a request storm.
MIN_REFRESH_INTERVAL = 1.0
# The same floor for the collectors' intervals: each run is at least one request per instance. They
# need not be longer than poll.interval (a 10s replication interval with a 30s session poll is fine).
MIN_COLLECTOR_INTERVAL = 1.0
TOP_SESSIONS_SQL = ("none", "digest", "fingerprint")
# ListStarRocksDataReplications' total_count has at most 3 digits: fewer than 1000 tasks per instance.
MAX_REPLICATION_TASKS = 1000


@dataclass(frozen=True)
class TokenAuth:
    token: SecretSource
    type: str = "token"


@dataclass(frozen=True)
class PasswordAuth:
    domain: str
    username: str
    password: SecretSource
    type: str = "password"


@dataclass(frozen=True)
class AkSkAuth:
    access_key: SecretSource
    secret_key: SecretSource
    security_token: SecretSource | None = None
    type: str = "aksk"


AuthConfig = TokenAuth | PasswordAuth | AkSkAuth


@dataclass(frozen=True)
class InstanceConfig:
    id: str
    name: str
    # Discovered facts (engine_version, node_count, status), exported on htap_instance_info.
    facts: tuple[tuple[str, str], ...] = ()
    # The TaurusDB instance it belongs to (`...in07`): the path of ListStarrocksInstanceInfo needs it
    # for node health. Discovery knows it; a listed instance may give it.
    taurus_instance_id: str | None = None


# HTAP instances in these states have no sessions to read (yet or any more).
DEFAULT_SKIP_STATUSES = frozenset({"creating", "createfail", "deleting", "deleted"})


@dataclass(frozen=True)
class DiscoveryConfig:
    enabled: bool = False
    refresh_interval: float = 300.0
    include: str = ".*"  # matched against the whole HTAP instance name, like Prometheus relabeling
    exclude: str = ""  # empty: exclude nothing
    skip_frozen: bool = True
    skip_statuses: frozenset[str] = DEFAULT_SKIP_STATUSES  # lower case, compared case-insensitively

    def wants(self, name: str) -> bool:
        if not re.fullmatch(self.include, name):
            return False
        return not (self.exclude and re.fullmatch(self.exclude, name))


@dataclass(frozen=True)
class ProjectConfig:
    project_id: str
    region: str
    endpoint: str
    iam_endpoint: str
    auth: AuthConfig
    instances: tuple[InstanceConfig, ...]
    api_rate_limit: float = 0.0
    # Opt-in for http:// endpoints to a non-loopback host (credentials would travel in clear text).
    allow_http: bool = False
    ca_file: Path | None = None  # PEM bundle trusted instead of the system CAs for this project
    discovery: DiscoveryConfig | None = None  # None: not enabled

    def cleartext_endpoints(self) -> list[tuple[str, str]]:
        """(key, url) of every endpoint this project reaches over plain http to a non-loopback host."""
        return [(key, url) for key, url in (("endpoint", self.endpoint), ("iam_endpoint", self.iam_endpoint))
                if is_cleartext_remote(url)]


@dataclass(frozen=True)
class PollConfig:
    interval: float = 30.0
    timeout: float = 10.0
    # Requests in flight, all instances together: keeps up with 10,000 instances per 30 s or 1,000
    # per 5 s against a server answering in 20 ms (docs/performance.md, "Performance and sizing"); 32 did not
    # at 10,000, where a busy event loop adds its own delay to every request's slot.
    concurrency: int = 64
    # Hostile or broken servers must not exhaust memory or page forever.
    max_body_bytes: int = 8 * 1024 * 1024
    max_pages: int = 200
    backoff_max: float | None = None  # None: 10x interval, at most 5 minutes

    @property
    def backoff_cap(self) -> float:
        if self.backoff_max is not None:
            return self.backoff_max
        return max(self.interval, min(10 * self.interval, 300.0))


@dataclass(frozen=True)
class MetricsConfig:
    max_users: int = 50
    max_databases: int = 50
    hosts: bool = False
    max_hosts: int = 50
    idle_commands: frozenset[str] = frozenset({"Sleep", "Daemon"})
    max_label_length: int = 128  # characters of a user/database/host/state/command label value
    duration_buckets: tuple[float, ...] = (1, 5, 10, 30, 60, 300, 600, 1800, 3600)


@dataclass(frozen=True)
class TopSessionsConfig:
    """The longest-running sessions, read from the session list itself: no extra API call."""
    enabled: bool = False
    count: int = 5  # per instance, 1..20
    min_duration: float = 60.0  # seconds; 0 takes every non-idle session
    sql: str = "none"  # none | digest | fingerprint


@dataclass(frozen=True)
class ReplicationConfig:
    """ListStarRocksDataReplications: the TaurusDB -> StarRocks sync tasks."""
    enabled: bool = False
    interval: float = 60.0
    max_tasks: int = 100  # per-task series for at most this many tasks (abnormal first, then by name)


@dataclass(frozen=True)
class NodesConfig:
    """ListInstanceNode (roles) and ListStarrocksInstanceInfo (health)."""
    enabled: bool = False
    interval: float = 300.0


@dataclass(frozen=True)
class QueryQueueConfig:
    """ShowHtapQueryQueuesRule: the query-queue switch and limits."""
    enabled: bool = False
    interval: float = 600.0


@dataclass(frozen=True)
class CollectorsConfig:
    top_sessions: TopSessionsConfig = field(default_factory=TopSessionsConfig)
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)
    nodes: NodesConfig = field(default_factory=NodesConfig)
    query_queue: QueryQueueConfig = field(default_factory=QueryQueueConfig)

    def enabled(self) -> tuple[str, ...]:
        """Names of the enabled collectors besides the session poll, in the config's order."""
        return tuple(name for name in ("top_sessions", "replication", "nodes", "query_queue")
                     if getattr(self, name).enabled)

    def describe(self) -> str:
        """The --config.check line: the session poll and every enabled collector with its settings."""
        parts = ["sessions"]
        if self.top_sessions.enabled:
            t = self.top_sessions
            parts.append(f"top_sessions(count={t.count} min_duration={_fmt_seconds(t.min_duration)} sql={t.sql})")
        if self.replication.enabled:
            parts.append(f"replication(interval={_fmt_seconds(self.replication.interval)}"
                         f" max_tasks={self.replication.max_tasks})")
        if self.nodes.enabled:
            parts.append(f"nodes(interval={_fmt_seconds(self.nodes.interval)})")
        if self.query_queue.enabled:
            parts.append(f"query_queue(interval={_fmt_seconds(self.query_queue.interval)})")
        return "collectors: " + " ".join(parts)


@dataclass(frozen=True)
class Config:
    file: str
    poll: PollConfig = field(default_factory=PollConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    projects: tuple[ProjectConfig, ...] = ()
    collectors: CollectorsConfig = field(default_factory=CollectorsConfig)

    def secrets(self) -> list[str]:
        """Inline secret values, for the log redactor (defence in depth)."""
        found: list[str] = []
        for project in self.projects:
            for source in _secret_sources(project.auth):
                if source.value is not None and source.value.reveal():
                    found.append(source.value.reveal())
        return found

    def summary(self) -> str:
        """What --config.check prints: the whole config, every secret masked."""
        lines = [
            f"config file: {self.file}",
            f"poll: interval={_fmt_seconds(self.poll.interval)} timeout={_fmt_seconds(self.poll.timeout)}"
            f" concurrency={self.poll.concurrency}",
            f"metrics: max_users={self.metrics.max_users} max_databases={self.metrics.max_databases}"
            f" hosts={str(self.metrics.hosts).lower()} max_hosts={self.metrics.max_hosts}"
            f" max_label_length={self.metrics.max_label_length}"
            f" idle_commands={','.join(sorted(self.metrics.idle_commands))}"
            f" duration_buckets={','.join(_fmt_number(b) for b in self.metrics.duration_buckets)}",
            self.collectors.describe(),
        ]
        for index, project in enumerate(self.projects):
            auth = project.auth
            if isinstance(auth, TokenAuth):
                auth_text = f"token (token={auth.token.describe()})"
            elif isinstance(auth, PasswordAuth):
                auth_text = (
                    f"password (domain={auth.domain} username={auth.username}"
                    f" password={auth.password.describe()})"
                )
            else:
                auth_text = (
                    f"aksk (access_key={auth.access_key.describe()} secret_key={auth.secret_key.describe()}"
                    + (f" security_token={auth.security_token.describe()}" if auth.security_token else "")
                    + ")"
                )
            lines.append(
                f"projects[{index}]: project_id={project.project_id} region={project.region}"
                f" endpoint={project.endpoint} iam_endpoint={project.iam_endpoint}"
                f" api_rate_limit={_fmt_number(project.api_rate_limit)}"
                + (" allow_http=true" if project.allow_http else "")
                + (f" ca_file={project.ca_file}" if project.ca_file is not None else "")
            )
            lines.append(f"  auth: {auth_text}")
            if project.discovery is not None:
                d = project.discovery
                lines.append(f"  discovery: refresh_interval={_fmt_seconds(d.refresh_interval)} include={d.include!r}"
                             f" exclude={d.exclude!r} skip_frozen={str(d.skip_frozen).lower()}"
                             f" skip_statuses={','.join(sorted(d.skip_statuses))}")
            for instance in project.instances:
                lines.append(f"  instance: {instance.id} name={instance.name}"
                             + (f" taurus_instance_id={instance.taurus_instance_id}"
                                if instance.taurus_instance_id else ""))
        total = sum(len(p.instances) for p in self.projects)
        discovering = sum(1 for p in self.projects if p.discovery is not None)
        lines.append(f"OK: {len(self.projects)} project(s), {total} instance(s)"
                     + (f", discovery in {discovering} project(s)" if discovering else ""))
        return "\n".join(lines)


def _secret_sources(auth: AuthConfig) -> list[SecretSource]:
    if isinstance(auth, TokenAuth):
        return [auth.token]
    if isinstance(auth, PasswordAuth):
        return [auth.password]
    return [s for s in (auth.access_key, auth.secret_key, auth.security_token) if s is not None]


def is_cleartext_remote(url: str) -> bool:
    """True for an http:// URL whose host is not a loopback address."""
    parsed = URL(url)
    if parsed.scheme != "http":
        return False
    host = (parsed.host or "").lower()
    if host in LOOPBACK_HOSTS or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True  # a host name: it could resolve anywhere


def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _fmt_seconds(value: float) -> str:
    return _fmt_number(value) + "s"


def parse_duration(value: Any) -> float:
    """Go-style duration ("500ms", "15s", "1m30s") or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 500ms or 2m")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("must be a duration such as 30s, 500ms or 2m")
        try:
            seconds = float(text)
        except ValueError:
            position = 0
            seconds = 0.0
            for match in DURATION_RE.finditer(text):
                if match.start() != position:
                    break
                unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
                seconds += float(match.group(1)) * unit
                position = match.end()
            if position != len(text) or position == 0:
                raise ValueError(f"invalid duration {value!r}: use a number of seconds or units ms, s, m, h") from None
    else:
        raise ValueError("must be a duration such as 30s, 500ms or 2m")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("must be a positive duration")
    return seconds


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """Expand ${VAR} in one string value; raises KeyError(name) for an unset variable."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name = match.group(1)
        if not ENV_NAME_RE.fullmatch(name):
            raise ValueError(f"invalid variable name ${{{name}}}")
        if name not in env:
            raise KeyError(name)
        return env[name]

    return ENV_RE.sub(replace, text)


class _Reader(Reader):
    """The config's values: strings with ${ENV} expanded, numbers, durations, paths, secrets."""

    def __init__(self, file: str, env: Mapping[str, str], base_dir: Path) -> None:
        super().__init__(file)
        self.env = env
        self.base_dir = base_dir

    def string(self, value: Any, path: str) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.error(path, f"must be a string, got {_type_name(value)}")
        text = str(value)
        try:
            text = expand_env(text, self.env)
        except KeyError as unset:
            raise self.error(path, f"environment variable {unset.args[0]} is not set") from None
        except ValueError as bad:
            raise self.error(path, str(bad)) from None
        text = text.strip()
        if not text:
            raise self.error(path, "must not be empty")
        return text

    def optional_string(self, value: Any, path: str) -> str | None:
        return None if value is None else self.string(value, path)

    def integer(self, value: Any, path: str, *, minimum: int, maximum: int | None = None) -> int:
        if isinstance(value, str):
            value = self.string(value, path)
            try:
                value = int(value)
            except ValueError:
                raise self.error(path, f"must be an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"must be an integer, got {_type_name(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise self.error(path, f"must be {bound}, got {value}")
        return value

    def number(self, value: Any, path: str, *, minimum: float) -> float:
        if isinstance(value, str):
            value = self.string(value, path)
            try:
                value = float(value)
            except ValueError:
                raise self.error(path, f"must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            got = repr(value) if isinstance(value, float) else _type_name(value)  # inf, nan: not "a number"
            raise self.error(path, f"must be a number, got {got}")
        if value < minimum:
            raise self.error(path, f"must be >= {_fmt_number(minimum)}, got {_fmt_number(value)}")
        return float(value)

    def boolean(self, value: Any, path: str) -> bool:
        if isinstance(value, str):
            text = self.string(value, path).lower()
            if text in ("true", "yes", "on", "1"):
                return True
            if text in ("false", "no", "off", "0"):
                return False
        if isinstance(value, bool):
            return value
        raise self.error(path, f"must be true or false, got {value!r}")

    def duration(self, value: Any, path: str) -> float:
        if isinstance(value, str):
            value = self.string(value, path)
        try:
            return parse_duration(value)
        except ValueError as bad:
            raise self.error(path, str(bad)) from None

    def path(self, value: Any, path: str) -> Path:
        """A file name; relative ones are relative to the config file's directory."""
        file_path = Path(self.string(value, path))
        return file_path if file_path.is_absolute() else self.base_dir / file_path

    def sequence(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(path, f"must be a list, got {_type_name(value)}")
        return value

    def secret(self, section: dict[str, Any], key: str, path: str, *, required: bool = True) -> SecretSource | None:
        """`key` inline or `key_file`, exactly one of them."""
        file_key = f"{key}_file"
        inline, file = section.get(key), section.get(file_key)
        if inline is not None and file is not None:
            raise self.error(_join(path, key), f"give either {key} or {file_key}, not both")
        if inline is not None:
            unexpanded = UNEXPANDED_RE.fullmatch(inline) if isinstance(inline, str) else None
            if unexpanded is not None:
                name = unexpanded.group(1)
                # Name the variable only when it looks like one: a real password such as "$ecret"
                # must not be echoed.
                hint = f"${{{name}}}" if CONVENTIONAL_ENV_NAME_RE.fullmatch(name) else "${NAME}"
                raise self.error(_join(path, key),
                                 f"looks like an unexpanded environment variable: write {hint} to read it from"
                                 f" the environment (a literal value starting with $ can go in {file_key})")
            source = SecretSource(value=Secret(self.string(inline, _join(path, key))), kind=key)
            source_path = _join(path, key)
        elif file is not None:
            source = SecretSource(file=self.path(file, _join(path, file_key)), kind=key)
            source_path = _join(path, file_key)
        elif required:
            raise self.error(path, f"missing {key} (or {file_key})")
        else:
            return None
        try:
            source.read()
        except SecretError as problem:
            raise self.error(source_path, str(problem)) from None
        return source


def _read_poll(r: _Reader, raw: Any) -> PollConfig:
    section = r.mapping(raw, "poll", {"interval", "timeout", "concurrency", "max_body_bytes",
                                      "max_pages", "backoff_max"})
    defaults = PollConfig()
    interval = r.duration(section["interval"], "poll.interval") if "interval" in section else defaults.interval
    # The default timeout shrinks to a shorter interval; an explicit one must fit in it.
    timeout = (r.duration(section["timeout"], "poll.timeout") if "timeout" in section
               else min(defaults.timeout, interval))
    return PollConfig(
        interval=interval,
        timeout=timeout,
        concurrency=r.integer(section.get("concurrency", defaults.concurrency), "poll.concurrency",
                              minimum=1, maximum=1000),
        max_body_bytes=r.integer(section.get("max_body_bytes", defaults.max_body_bytes),
                                 "poll.max_body_bytes", minimum=1024),
        max_pages=r.integer(section.get("max_pages", defaults.max_pages), "poll.max_pages",
                            minimum=1, maximum=100000),
        backoff_max=(r.duration(section["backoff_max"], "poll.backoff_max")
                     if section.get("backoff_max") is not None else None),
    )


def _read_metrics(r: _Reader, raw: Any) -> MetricsConfig:
    section = r.mapping(raw, "metrics", {"max_users", "max_databases", "hosts", "max_hosts",
                                         "idle_commands", "duration_buckets", "max_label_length"})
    defaults = MetricsConfig()
    idle = defaults.idle_commands
    if "idle_commands" in section:
        items = r.sequence(section["idle_commands"], "metrics.idle_commands")
        idle = frozenset(r.string(c, f"metrics.idle_commands[{i}]") for i, c in enumerate(items))
    buckets = defaults.duration_buckets
    if "duration_buckets" in section:
        items = r.sequence(section["duration_buckets"], "metrics.duration_buckets")
        if not items:
            raise r.error("metrics.duration_buckets", "must list at least one bucket bound")
        values = [r.number(b, f"metrics.duration_buckets[{i}]", minimum=0) for i, b in enumerate(items)]
        for i in range(1, len(values)):
            if values[i] <= values[i - 1]:
                raise r.error(f"metrics.duration_buckets[{i}]", "bucket bounds must be strictly increasing")
        buckets = tuple(values)
    return MetricsConfig(
        max_users=r.integer(section.get("max_users", defaults.max_users), "metrics.max_users", minimum=1),
        max_databases=r.integer(section.get("max_databases", defaults.max_databases),
                                "metrics.max_databases", minimum=1),
        hosts=r.boolean(section.get("hosts", defaults.hosts), "metrics.hosts"),
        max_hosts=r.integer(section.get("max_hosts", defaults.max_hosts), "metrics.max_hosts", minimum=1),
        idle_commands=idle,
        # At least room for a readable prefix beside the 13-character hash suffix of a cut value.
        max_label_length=r.integer(section.get("max_label_length", defaults.max_label_length),
                                   "metrics.max_label_length", minimum=32, maximum=65536),
        duration_buckets=buckets,
    )


def _read_auth(r: _Reader, raw: Any, path: str) -> AuthConfig:
    if not isinstance(raw, dict):
        raise r.error(path, f"must be a mapping with a type (aksk, password or token), got {_type_name(raw)}")
    auth_type = r.string(raw.get("type", ""), _join(path, "type")) if raw.get("type") else None
    if auth_type == "token":
        section = r.mapping(raw, path, {"type", "token", "token_file"})
        token = r.secret(section, "token", path)
        assert token is not None
        return TokenAuth(token=token)
    if auth_type == "password":
        section = r.mapping(raw, path, {"type", "domain", "username", "password", "password_file"})
        for key in ("domain", "username"):
            if key not in section:
                raise r.error(path, f"missing {key}")
        password = r.secret(section, "password", path)
        assert password is not None
        return PasswordAuth(domain=r.string(section["domain"], _join(path, "domain")),
                            username=r.string(section["username"], _join(path, "username")),
                            password=password)
    if auth_type == "aksk":
        section = r.mapping(raw, path, {"type", "access_key", "access_key_file", "secret_key",
                                        "secret_key_file", "security_token", "security_token_file"})
        access_key = r.secret(section, "access_key", path)
        secret_key = r.secret(section, "secret_key", path)
        assert access_key is not None and secret_key is not None
        return AkSkAuth(access_key=access_key, secret_key=secret_key,
                        security_token=r.secret(section, "security_token", path, required=False))
    if auth_type is None:
        raise r.error(_join(path, "type"), "missing: one of aksk, password, token")
    raise r.error(_join(path, "type"), f"unknown auth type {auth_type!r}: use aksk, password or token")


def _read_url(r: _Reader, value: Any, path: str) -> str:
    url = r.string(value, path).rstrip("/")
    if not re.fullmatch(r"https?://[^/\s?#@]+(/[^\s?#]*)?", url):
        if "@" in url:  # never echo what may be a password
            raise r.error(path, "must not hold credentials (user:password@): use auth")
        raise r.error(path, f"must be an http(s) URL, got {url!r}")
    try:
        URL(url).port  # noqa: B018  (parsing the port is the check)
    except ValueError:
        raise r.error(path, f"must be an http(s) URL with a valid port, got {url!r}") from None
    return url


def _read_project(r: _Reader, raw: Any, path: str, seen_instances: dict[str, str]) -> ProjectConfig:
    section = r.mapping(raw, path, {"project_id", "region", "endpoint", "iam_endpoint", "auth",
                                    "instances", "api_rate_limit", "allow_http", "ca_file", "discovery"})
    for key in ("project_id", "region", "auth"):
        if key not in section:
            raise r.error(path, f"missing {key}")
    project_id = r.string(section["project_id"], _join(path, "project_id"))
    if not PROJECT_ID_RE.fullmatch(project_id):
        raise r.error(_join(path, "project_id"), f"must be 32 letters or digits, got {project_id!r}")
    region = r.string(section["region"], _join(path, "region"))
    if not REGION_RE.fullmatch(region):
        raise r.error(_join(path, "region"), f"not a region name like cn-north-4, got {region!r}")
    auth = _read_auth(r, section["auth"], _join(path, "auth"))
    if region not in KNOWN_REGIONS:
        # A typo would otherwise fail every poll later with a DNS error.
        missing = [key for key in ("endpoint", "iam_endpoint")
                   if section.get(key) is None and (key == "endpoint" or isinstance(auth, PasswordAuth))]
        if missing:
            guess = nearest_region(region)
            raise r.error(_join(path, "region"),
                          f"unknown region {region!r}" + (f" (did you mean {guess}?)" if guess else "")
                          + f"; known: {', '.join(sorted(KNOWN_REGIONS))}; for another region set "
                          + " and ".join(missing))
    endpoint = (_read_url(r, section["endpoint"], _join(path, "endpoint"))
                if section.get("endpoint") is not None else default_endpoint(region))
    iam_endpoint = (_read_url(r, section["iam_endpoint"], _join(path, "iam_endpoint"))
                    if section.get("iam_endpoint") is not None else default_iam_endpoint(region))
    allow_http = (r.boolean(section["allow_http"], _join(path, "allow_http"))
                  if section.get("allow_http") is not None else False)
    if not allow_http:
        # IAM is only contacted with password auth; an unused http iam_endpoint sends nothing.
        for key, url in (("endpoint", endpoint), ("iam_endpoint", iam_endpoint)):
            if is_cleartext_remote(url) and (key == "endpoint" or isinstance(auth, PasswordAuth)):
                raise r.error(_join(path, key),
                              f"http:// to a non-loopback host sends credentials in clear text: use https,"
                              f" or set {_join(path, 'allow_http')}: true")
    ca_file = None
    if section.get("ca_file") is not None:
        ca_file = r.path(section["ca_file"], _join(path, "ca_file"))
        try:
            ca_context(ca_file)
        except SecretError as problem:
            raise r.error(_join(path, "ca_file"), str(problem)) from None
    discovery = _read_discovery(r, section.get("discovery"), _join(path, "discovery"))
    instances: list[InstanceConfig] = []
    raw_instances = section.get("instances")
    if raw_instances is None:
        if discovery is None:
            raise r.error(path, "missing instances (a list of HTAP instances to poll, or discovery.enabled: true)")
        raw_instances = []
    for index, item in enumerate(r.sequence(raw_instances, _join(path, "instances"))):
        instances.append(_read_instance(r, item, f"{_join(path, 'instances')}[{index}]", seen_instances))
    rate = section.get("api_rate_limit")
    return ProjectConfig(
        project_id=project_id,
        region=region,
        endpoint=endpoint,
        iam_endpoint=iam_endpoint,
        auth=auth,
        instances=tuple(instances),
        api_rate_limit=r.number(rate, _join(path, "api_rate_limit"), minimum=0) if rate is not None else 0.0,
        allow_http=allow_http,
        ca_file=ca_file,
        discovery=discovery,
    )


def _read_instance(r: _Reader, item: Any, item_path: str, seen_instances: dict[str, str]) -> InstanceConfig:
    if isinstance(item, str):
        item = {"id": item}
    entry = r.mapping(item, item_path, {"id", "name", "taurus_instance_id"})
    if "id" not in entry:
        raise r.error(item_path, "missing id")
    instance_id = r.string(entry["id"], _join(item_path, "id"))
    if not INSTANCE_ID_RE.fullmatch(instance_id):
        raise r.error(_join(item_path, "id"),
                      f"must be an HTAP instance id (36 letters or digits ending in in17), got {instance_id!r}")
    if instance_id in seen_instances:
        raise r.error(_join(item_path, "id"),
                      f"instance {instance_id} is already listed at {seen_instances[instance_id]}")
    seen_instances[instance_id] = item_path
    name = r.string(entry["name"], _join(item_path, "name")) if entry.get("name") is not None else instance_id
    taurus_id = None
    if entry.get("taurus_instance_id") is not None:
        taurus_path = _join(item_path, "taurus_instance_id")
        taurus_id = r.string(entry["taurus_instance_id"], taurus_path)
        if not TAURUS_INSTANCE_ID_RE.fullmatch(taurus_id):
            raise r.error(taurus_path, "must be a TaurusDB instance id (36 letters or digits ending in in07),"
                                       f" got {taurus_id!r}")
    return InstanceConfig(id=instance_id, name=name, taurus_instance_id=taurus_id)


def _read_collector_interval(r: _Reader, section: dict[str, Any], path: str, default: float) -> float:
    if section.get("interval") is None:
        return default
    interval = r.duration(section["interval"], _join(path, "interval"))
    if interval < MIN_COLLECTOR_INTERVAL:
        raise r.error(_join(path, "interval"),
                      f"must be at least {_fmt_seconds(MIN_COLLECTOR_INTERVAL)}, got {_fmt_seconds(interval)}")
    return interval


def _read_periodic(r: _Reader, raw: Any, path: str, defaults: ReplicationConfig | NodesConfig | QueryQueueConfig,
                   extra: set[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A collector section that runs on its own interval: the section, and its `enabled` and
    `interval` read (the keys every such section has, and `extra`)."""
    section = r.mapping(raw, path, {"enabled", "interval", *(extra or ())})
    return section, {"enabled": r.boolean(section.get("enabled", defaults.enabled), _join(path, "enabled")),
                     "interval": _read_collector_interval(r, section, path, defaults.interval)}


def _read_collectors(r: _Reader, raw: Any) -> CollectorsConfig:
    top = r.mapping(raw, "collectors", {"top_sessions", "replication", "nodes", "query_queue"})

    path = "collectors.top_sessions"
    section = r.mapping(top.get("top_sessions"), path, {"enabled", "count", "min_duration", "sql"})
    defaults_top = TopSessionsConfig()
    min_duration = defaults_top.min_duration
    if section.get("min_duration") is not None:
        value = section["min_duration"]
        text = r.string(value, _join(path, "min_duration")) if isinstance(value, str) else value
        # Zero is a choice here (every non-idle session), unlike for an interval.
        min_duration = (0.0 if text in (0, "0", "0s", "0ms", "0m", "0h")
                        else r.duration(text, _join(path, "min_duration")))
    sql = defaults_top.sql
    if section.get("sql") is not None:
        sql = r.string(section["sql"], _join(path, "sql"))
        if sql not in TOP_SESSIONS_SQL:
            raise r.error(_join(path, "sql"), f"must be one of {', '.join(TOP_SESSIONS_SQL)}, got {sql!r}")
    top_sessions = TopSessionsConfig(
        enabled=r.boolean(section.get("enabled", defaults_top.enabled), _join(path, "enabled")),
        count=r.integer(section.get("count", defaults_top.count), _join(path, "count"), minimum=1, maximum=20),
        min_duration=min_duration,
        sql=sql,
    )

    path = "collectors.replication"
    defaults_repl = ReplicationConfig()
    section, common = _read_periodic(r, top.get("replication"), path, defaults_repl, {"max_tasks"})
    replication = ReplicationConfig(
        **common,
        max_tasks=r.integer(section.get("max_tasks", defaults_repl.max_tasks), _join(path, "max_tasks"),
                            minimum=1, maximum=MAX_REPLICATION_TASKS),
    )
    nodes = NodesConfig(**_read_periodic(r, top.get("nodes"), "collectors.nodes", NodesConfig())[1])
    query_queue = QueryQueueConfig(
        **_read_periodic(r, top.get("query_queue"), "collectors.query_queue", QueryQueueConfig())[1])
    return CollectorsConfig(top_sessions=top_sessions, replication=replication, nodes=nodes,
                            query_queue=query_queue)


def _read_regex(r: _Reader, value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise r.error(path, f"must be a regular expression (a string), got {_type_name(value)}")
    pattern = str(value)
    try:
        re.compile(pattern)
    except re.error as bad:
        raise r.error(path, f"invalid regular expression: {bad}") from None
    return pattern


def _read_discovery(r: _Reader, raw: Any, path: str) -> DiscoveryConfig | None:
    """The project's discovery settings, or None when it is not enabled."""
    if raw is None:
        return None
    section = r.mapping(raw, path, {"enabled", "refresh_interval", "include", "exclude", "skip_frozen",
                                    "skip_statuses"})
    defaults = DiscoveryConfig()
    enabled = r.boolean(section.get("enabled", False), _join(path, "enabled"))
    refresh = (r.duration(section["refresh_interval"], _join(path, "refresh_interval"))
               if "refresh_interval" in section else defaults.refresh_interval)
    if refresh < MIN_REFRESH_INTERVAL:
        raise r.error(_join(path, "refresh_interval"),
                      f"must be at least {_fmt_seconds(MIN_REFRESH_INTERVAL)}, got {_fmt_seconds(refresh)}")
    statuses = defaults.skip_statuses
    if section.get("skip_statuses") is not None:
        items = r.sequence(section["skip_statuses"], _join(path, "skip_statuses"))
        statuses = frozenset(r.string(s, f"{_join(path, 'skip_statuses')}[{i}]").lower()
                             for i, s in enumerate(items))
    config = DiscoveryConfig(
        enabled=enabled,
        refresh_interval=refresh,
        include=(_read_regex(r, section["include"], _join(path, "include"))
                 if section.get("include") is not None else defaults.include),
        exclude=(_read_regex(r, section["exclude"], _join(path, "exclude"))
                 if section.get("exclude") is not None else defaults.exclude),
        skip_frozen=r.boolean(section.get("skip_frozen", defaults.skip_frozen), _join(path, "skip_frozen")),
        skip_statuses=statuses,
    )
    return config if enabled else None


def parse_config(text: str, *, file: str = "config.yaml", env: Mapping[str, str] | None = None,
                 base_dir: Path | None = None) -> Config:
    r = _Reader(file, os.environ if env is None else env, base_dir or Path("."))
    raw = load_yaml(text, file)
    top = r.mapping(raw, "", {"poll", "metrics", "projects", "collectors"})
    if not top.get("projects"):
        raise r.error("projects", "missing: list at least one project with its instances")
    seen: dict[str, str] = {}
    projects = tuple(
        _read_project(r, item, f"projects[{index}]", seen)
        for index, item in enumerate(r.sequence(top["projects"], "projects"))
    )
    # Discovery's metrics are per project_id, and two entries would find the same instances.
    discovering: dict[str, int] = {}
    for index, project in enumerate(projects):
        if project.discovery is not None:
            if project.project_id in discovering:
                raise r.error(f"projects[{index}].discovery.enabled",
                              f"project {project.project_id} already has discovery enabled at"
                              f" projects[{discovering[project.project_id]}]: one discovering entry per project")
            discovering[project.project_id] = index
    poll = _read_poll(r, top.get("poll"))
    if poll.timeout > poll.interval:
        raise r.error("poll.timeout", f"must not exceed poll.interval ({_fmt_seconds(poll.interval)})")
    if poll.backoff_max is not None and poll.backoff_max < poll.interval:
        # A shorter cap would poll a failing instance faster than a healthy one.
        raise r.error("poll.backoff_max", f"must not be shorter than poll.interval ({_fmt_seconds(poll.interval)})")
    return Config(file=file, poll=poll, metrics=_read_metrics(r, top.get("metrics")), projects=projects,
                  collectors=_read_collectors(r, top.get("collectors")))


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    file = str(path)
    if not Path(path).exists():
        raise ConfigError(file, "", "file not found")
    try:
        # The same care as for secret files: a reload must never block on a FIFO or read /dev/zero.
        text = read_small_file(Path(path), MAX_CONFIG_FILE_BYTES).decode("utf-8")
    except FileReadError as problem:
        raise ConfigError(file, "", problem.reason.removeprefix("is ")) from None
    except UnicodeDecodeError:
        raise ConfigError(file, "", "not UTF-8 text") from None
    return parse_config(text, file=file, env=env, base_dir=Path(path).resolve().parent)
