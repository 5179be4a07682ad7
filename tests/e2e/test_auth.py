"""Authentication as Huawei Cloud users really do it: the real CLI against the simulator.

Every way to give credentials (static token, IAM password, AK/SK with and without a temporary
security token; inline, from a file, from ${ENV}) polls end to end; an IAM token is shared per
project, refreshed before it expires and renewed once when it is revoked; rejected credentials
are not retried in a loop; and no secret ever shows up in a log line (debug level, both formats),
in /metrics or in the --config.check summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable, Iterable

import pytest
from aiohttp import web

from htap_exporter.simulator import (SIM_ACCESS_KEY, SIM_DOMAIN, SIM_PASSWORD, SIM_SECRET_KEY, SIM_TOKEN, Simulator,
                                instance_id_for, start)
from tests.e2e.harness import Exporter, by_label, parse_samples, value, wait_until, write_config

REASONS = ("auth", "throttled", "timeout", "network", "http", "bad_response")

# Every credential used here is ours (registered in the simulator) and random-looking, so that a
# leak of even a fragment of one can be told from ordinary text.
TOKEN = "tok-inline-Q7vX2pLr9KdW4mZs8YbN3cHf"
FILE_TOKEN = "tok-file-J5nR8wTq2VxC6bLm9ZpK4sHd"
USER = "ops-reader"
PASSWORD = "pw-inline-X3kP9qLw7Nz2RvT5mB8cYa"
FILE_USER = "ops-file-reader"
FILE_PASSWORD = "pw-file-F6hJ2dS9kW4pQ7zV3nC8xEu"
AK = "AKINLINE7Q2W9E4R6T1Y"
SK = "skInline8Hq3Zp6Wm1Nv4Tx9Ry2Lc5Kd7Jf0Gb3Vs"
TEMP_AK = "AKTEMPORARY3N8B5V1C7"
TEMP_SK = "skTemp2Mx7Qn4Wb9Zr1Ls6Pd3Kv8Hj5Gc0Ft4Ya"
SECURITY_TOKEN = "st-inline-Gq4Tz8Wm2Xv6Nb1Rk9Lp3Hs7Dc5Jf0Ya"
FILE_AK = "AKFROMFILE6D3F8G2H5J"
FILE_SK = "skFile5Rt9Yu2Io7Pa4Sd1Fg6Hj3Kl8Zx0Cv5Bn"
FILE_SECURITY_TOKEN = "st-file-Wv7Ec2Rb9Tn4Ym1Ux6Iz3Ok8Pl5Qa0Sd"
WRONG_SK = "skWrong4Zx8Cv1Bn6Mq3Wr9Et2Yu7Io5Pa0Sd4Fg"
WRONG_PASSWORD = "pw-wrong-H8jK3lZ6xC1vB9nM4qW7eR2t"
ENV_AK = "AKFROMENV9K4L7M2N5P8"
ENV_SK = "skEnv3Jh8Gf1Ds6Az9Lk4Qw7Er2Ty5Ui0Op3Mn"
ENV_SECURITY_TOKEN = "st-env-Bx5Nv9Cm2Lz7Kq4Wj1Hp8Gr3Fs6Dt0Ey"
ENV_PASSWORD = "pw-env-R2tY7uI4oP9aS1dF6gH3jK8lZ5xC"
ENV_TOKEN = "tok-env-M4nB8vC1xZ6lK3jH9gF2dS7aQ5wE"
SECRETS = (TOKEN, FILE_TOKEN, PASSWORD, FILE_PASSWORD, AK, SK, TEMP_AK, TEMP_SK, SECURITY_TOKEN, FILE_AK,
           FILE_SK, FILE_SECURITY_TOKEN, WRONG_SK, WRONG_PASSWORD, ENV_AK, ENV_SK, ENV_SECURITY_TOKEN,
           ENV_PASSWORD, ENV_TOKEN)
# The simulator's own credentials are not used, but must not show up either; being full of
# zeros, only their whole value is looked for.
SIM_SECRETS = (SIM_TOKEN, SIM_SECRET_KEY, SIM_PASSWORD, SIM_ACCESS_KEY)
# The gate pauses 15 s after the first rejection: in this window exactly one attempt is allowed.
REJECTION_WINDOW = 5.0


class RecordingSimulator(Simulator):
    """The simulator, plus what these tests need to know: every token IAM ever issued (revocation
    empties `issued_tokens`) and when, every X-Security-Token received; IAM can be made slow."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.base_url = ""
        self.all_tokens: list[str] = []
        self.token_issue_times: list[float] = []
        self.security_tokens_seen: list[str] = []
        self.iam_delay = 0.0

    async def issue_token(self, request: web.Request) -> web.Response:
        if self.iam_delay:
            await asyncio.sleep(self.iam_delay)
        response = await super().issue_token(request)
        token = response.headers.get("X-Subject-Token")
        if token:
            self.all_tokens.append(token)
            self.token_issue_times.append(time.time())
        return response

    def _authenticate(self, request: web.Request, project_id: str) -> str | None:
        if "X-Security-Token" in request.headers:
            self.security_tokens_seen.append(request.headers["X-Security-Token"])
        return super()._authenticate(request, project_id)


def rows_for(index: int) -> list[dict[str, object]]:
    """Instance `index` has 2 + 3*index sessions, every second one a Query."""
    return [{"id": str(n), "user": f"app{n % 3}", "host": f"10.0.{index}.{n}:40{n:02d}", "state": "OK",
             "database": "orders", "sql_statement": "", "duration": n, "command": "Query" if n % 2 else "Sleep"}
            for n in range(2 + 3 * index)]


def add_instance(sim: RecordingSimulator, index: int) -> str:
    instance_id = instance_id_for(index)
    sim.add_instance(instance_id, f"htap-{index + 1}").fixed_rows = rows_for(index)
    return instance_id


@pytest.fixture
async def sim() -> AsyncIterator[RecordingSimulator]:
    simulator = RecordingSimulator(instances=0)
    for index in range(3):
        add_instance(simulator, index)
    simulator.static_tokens |= {TOKEN, FILE_TOKEN}
    simulator.keys.update({AK: SK, TEMP_AK: TEMP_SK, FILE_AK: FILE_SK})
    simulator.users.update({(SIM_DOMAIN, USER): PASSWORD, (SIM_DOMAIN, FILE_USER): FILE_PASSWORD})
    runner, simulator.base_url = await start(simulator)
    try:
        yield simulator
    finally:
        await runner.cleanup()


def config_text(sim: RecordingSimulator, auth: str, *, interval: float = 0.5, instance_ids: Iterable[str] = ()) -> str:
    ids = list(instance_ids) or list(sim.instances)
    instances = "".join(f"      - id: {i}\n        name: {sim.instances[i].name}\n" for i in ids)
    # The timeout may not exceed the interval.
    return (f"poll:\n  interval: {interval}s\n  timeout: {interval}s\n  concurrency: 8\n"
            "projects:\n"
            f"  - project_id: {sim.project_id}\n"
            "    region: cn-north-4\n"
            f"    endpoint: {sim.base_url}\n"
            f"    iam_endpoint: {sim.base_url}\n"
            "    auth:\n" + textwrap.indent(textwrap.dedent(auth).strip() + "\n", " " * 6) +
            f"    instances:\n{instances}")


def exporter_for(config: Path, log_format: str, env: dict[str, str] | None = None) -> Exporter:
    return Exporter(["--config.file", str(config), "--log.level", "debug", "--log.format", log_format], env)


async def config_check(config: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "htap_exporter", "--config.file", str(config), "--config.check",
        env={**os.environ, **(env or {})}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def assert_no_secrets(sim: RecordingSimulator | None, **outputs: str) -> None:
    """No secret, nor the first or last 12 characters of one, in any of `outputs` (name -> text)."""
    secrets = list(SECRETS) + (sim.all_tokens if sim is not None else [])
    pieces = {piece: secret for secret in secrets for piece in (secret, secret[:12], secret[-12:])}
    pieces.update((secret, secret) for secret in SIM_SECRETS)
    found = [f"{name}: {piece!r} (from {secret[:10]}...)"
             for name, text in outputs.items() for piece, secret in pieces.items() if piece in text]
    assert not found, "secrets leaked:\n" + "\n".join(found)


def log_line_has(line: str, log_format: str, message: str, **fields: str) -> bool:
    """Whether a log line's message holds `message` and it carries these fields (as its own keys
    in both formats)."""
    if log_format == "json":
        document = json.loads(line)
        return message in document.get("msg", "") and all(document.get(k) == v for k, v in fields.items())
    return message in line and all(f"{k}={v}" in line or f'{k}="{v}"' in line for k, v in fields.items())


def assert_log_format(exporter: Exporter, log_format: str) -> None:
    assert exporter.log_lines, "no log lines"
    for line in exporter.log_lines:
        if log_format == "json":
            assert isinstance(json.loads(line), dict), line
        else:
            assert line.startswith("ts="), line


async def wait_sim(predicate: Callable[[], bool], *, what: str, timeout: float = 20.0) -> None:
    """wait_until for a condition on the simulator, which runs in this process."""

    async def check() -> bool:
        return predicate()
    await wait_until(check, timeout=timeout, what=what)


async def all_up(exporter: Exporter, instance_ids: Iterable[str], up: float = 1) -> bool:
    samples = await exporter.samples()
    return all(value(samples, "htap_up", instance_id=i) == up for i in instance_ids)


def errors_of(samples: list, instance_id: str) -> dict[str, float]:
    return by_label(samples, "htap_poll_errors_total", "reason", instance_id=instance_id)


def assert_polled_right(samples: list, sim: RecordingSimulator) -> None:
    for instance_id, instance in sim.instances.items():
        rows = instance.fixed_rows
        assert rows is not None
        labels = {"instance_id": instance_id, "instance_name": instance.name}
        assert value(samples, "htap_up", **labels) == 1
        assert value(samples, "htap_sessions", **labels) == len(rows)
        assert value(samples, "htap_sessions_by_command", **labels, command="Query") == len(rows) // 2
        assert errors_of(samples, instance_id) == {reason: 0 for reason in REASONS}


# --- every auth type, end to end ------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    name: str
    log_format: str
    auth: str
    files: tuple[tuple[str, str], ...]
    summary: str  # the auth line --config.check prints (after "  auth: "), {dir} = the config's directory
    iam: bool = False
    security_token: str | None = None
    env: tuple[tuple[str, str], ...] = ()


VARIANTS = [
    Variant("token", "logfmt", f"type: token\ntoken: {TOKEN}", (), "token (token=********)"),
    Variant("token_file", "json", "type: token\ntoken_file: token.txt", (("token.txt", FILE_TOKEN + "\n"),),
            "token (token=file {dir}/token.txt)"),
    Variant("password", "json", f"type: password\ndomain: {SIM_DOMAIN}\nusername: {USER}\npassword: {PASSWORD}", (),
            f"password (domain={SIM_DOMAIN} username={USER} password=********)", iam=True),
    Variant("password_file", "logfmt",
            f"type: password\ndomain: {SIM_DOMAIN}\nusername: {FILE_USER}\npassword_file: secrets/password",
            (("secrets/password", FILE_PASSWORD + "\n"),),
            f"password (domain={SIM_DOMAIN} username={FILE_USER} password=file {{dir}}/secrets/password)", iam=True),
    # As the README suggests: AK/SK from the environment.
    Variant("aksk", "logfmt", "type: aksk\naccess_key: ${HTAP_TEST_RUN_AK}\nsecret_key: ${HTAP_TEST_RUN_SK}", (),
            "aksk (access_key=******** secret_key=********)", env=(("HTAP_TEST_RUN_AK", AK), ("HTAP_TEST_RUN_SK", SK))),
    Variant("aksk_security_token", "json",
            f"type: aksk\naccess_key: {TEMP_AK}\nsecret_key: {TEMP_SK}\nsecurity_token: {SECURITY_TOKEN}", (),
            "aksk (access_key=******** secret_key=******** security_token=********)",
            security_token=SECURITY_TOKEN),
    Variant("aksk_files", "json",
            "type: aksk\naccess_key_file: ak\nsecret_key_file: sk\nsecurity_token_file: security-token",
            (("ak", FILE_AK + "\n"), ("sk", FILE_SK + "\n"), ("security-token", FILE_SECURITY_TOKEN + "\n")),
            "aksk (access_key=file {dir}/ak secret_key=file {dir}/sk security_token=file {dir}/security-token)",
            security_token=FILE_SECURITY_TOKEN),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
async def test_every_auth_type_polls_end_to_end(variant: Variant, sim: RecordingSimulator, tmp_path: Path) -> None:
    for name, content in variant.files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    config = write_config(tmp_path / "config.yaml", config_text(sim, variant.auth))

    code, out, err = await config_check(config, dict(variant.env))
    assert code == 0, out + err
    assert "  auth: " + variant.summary.format(dir=tmp_path) in out.splitlines(), out
    assert out.rstrip().endswith("OK: 1 project(s), 3 instance(s)"), out

    ids = list(sim.instances)
    async with exporter_for(config, variant.log_format, dict(variant.env)) as exporter:
        await wait_until(lambda: all_up(exporter, ids), what=f"all instances up with {variant.name}")
        # A few more polls each: the credentials keep working (an IAM token is reused, not re-fetched).
        await wait_sim(lambda: all(sim.observed.requests.get(i, 0) >= 3 for i in ids), what="three polls each")
        metrics = await exporter.scrape()
    samples = parse_samples(metrics)
    assert_polled_right(samples, sim)
    assert sim.observed.auth_failures == 0
    if variant.iam:
        assert (sim.observed.iam_requests, sim.observed.tokens_issued) == (1, 1)
        assert value(samples, "htap_api_requests_total", api="iam_token", code="201") == 1
    else:
        assert sim.observed.iam_requests == 0
        assert value(samples, "htap_api_requests_total", api="iam_token", code="201") is None
    if variant.security_token is None:
        assert sim.security_tokens_seen == []
    else:
        assert set(sim.security_tokens_seen) == {variant.security_token}
        assert len(sim.security_tokens_seen) == sum(sim.observed.requests.values())
    assert_log_format(exporter, variant.log_format)
    assert "poll failed" not in exporter.logs()
    assert_no_secrets(sim, stderr=exporter.logs(), metrics=metrics, check=out + err)


# --- IAM tokens: revocation, expiry, one per project ------------------------------------------------

PASSWORD_AUTH = f"type: password\ndomain: {SIM_DOMAIN}\nusername: {USER}\npassword: {PASSWORD}"


async def test_revoked_password_token_recovers_in_the_same_poll(sim: RecordingSimulator, tmp_path: Path) -> None:
    # One instance: then exactly one request can carry the revoked token.
    instance_id = instance_id_for(0)
    config = write_config(tmp_path / "config.yaml", config_text(sim, PASSWORD_AUTH, instance_ids=[instance_id]))
    requests = sim.observed.request_times

    async with exporter_for(config, "logfmt") as exporter:
        await wait_until(lambda: all_up(exporter, [instance_id]), what="first poll")
        await wait_sim(lambda: len(requests.get(instance_id, [])) >= 2, what="second poll")
        assert (sim.observed.iam_requests, sim.observed.tokens_issued, sim.observed.auth_failures) == (1, 1, 0)

        revoked_at = time.time()
        sim.issued_tokens.clear()  # e.g. the user's password was changed

        await wait_sim(lambda: any(t > revoked_at for t in requests[instance_id]), what="a poll after revocation")

        # The poll before the revocation may be published after it: wait for the one whose request
        # came after it.
        first_after = min(t for t in requests[instance_id] if t > revoked_at)

        async def published() -> bool:
            samples = await exporter.samples()
            last = value(samples, "htap_last_poll_success_timestamp_seconds", instance_id=instance_id)
            return (last or 0) > first_after
        await wait_until(published, what="the poll after revocation to be published")
        samples = await exporter.samples()
        # The first request after revocation got the one 401; the token was fetched again and the
        # request retried within the same poll, which therefore succeeded.
        assert sim.observed.auth_failures == 1
        assert sim.observed.auth_failure_times[0] > revoked_at
        assert (sim.observed.iam_requests, sim.observed.tokens_issued) == (2, 2)
        assert value(samples, "htap_up", instance_id=instance_id) == 1
        assert errors_of(samples, instance_id) == {reason: 0 for reason in REASONS}
        assert value(samples, "htap_api_requests_total", api="list_sessions", code="401") == 1
        assert value(samples, "htap_api_requests_total", api="iam_token", code="201") == 2
        assert list(sim.issued_tokens) == sim.all_tokens[1:]

        # The new token then serves the following polls.
        after = len(requests[instance_id])
        await wait_sim(lambda: len(requests[instance_id]) >= after + 2, what="two more polls")
        metrics = await exporter.scrape()
    assert (sim.observed.iam_requests, sim.observed.auth_failures) == (2, 1)
    assert "poll failed" not in exporter.logs()
    assert_no_secrets(sim, stderr=exporter.logs(), metrics=metrics)


async def test_iam_token_is_refreshed_before_it_expires(sim: RecordingSimulator, tmp_path: Path) -> None:
    ttl = 5.0  # refreshed at 80 % of its life (4 s); three instances poll every 0.4 s
    sim.token_ttl = ttl
    config = write_config(tmp_path / "config.yaml", config_text(sim, PASSWORD_AUTH, interval=0.4))
    ids = list(sim.instances)

    async with exporter_for(config, "json") as exporter:
        await wait_until(lambda: all_up(exporter, ids), what="first polls")
        await wait_sim(lambda: sim.observed.tokens_issued >= 3, timeout=3 * ttl + 10, what="two refreshes")
        third = sim.token_issue_times[2]
        await wait_sim(lambda: all(any(t > third for t in sim.observed.request_times[i]) for i in ids),
                         what="polls with the third token")
        metrics = await exporter.scrape()
        issued_at_scrape = sim.observed.tokens_issued  # a refresh may come before the exporter stops

    assert sim.observed.auth_failures == 0, "a request was made with an expired token"
    assert sim.observed.iam_requests == sim.observed.tokens_issued
    issued = sim.token_issue_times
    for index in range(len(issued) - 1):
        expires = sim.issued_tokens[sim.all_tokens[index]][1]
        assert issued[index + 1] < expires, f"token {index} replaced {issued[index + 1] - expires:.2f}s after expiry"
        assert issued[index + 1] - issued[index] > 0.7 * ttl, f"token {index} replaced too early: {issued}"
    samples = parse_samples(metrics)
    assert_polled_right(samples, sim)
    assert value(samples, "htap_api_requests_total", api="iam_token", code="201") == issued_at_scrape
    assert value(samples, "htap_api_requests_total", api="list_sessions", code="401") is None
    assert_log_format(exporter, "json")
    assert_no_secrets(sim, stderr=exporter.logs(), metrics=metrics)


async def test_one_iam_token_for_all_instances_of_a_project(sim: RecordingSimulator, tmp_path: Path) -> None:
    for index in range(3, 6):
        add_instance(sim, index)
    # IAM answers slowly, so that the polls of several instances (one every 1/6 s) come while a
    # token is being fetched, both for the first token and when it is refreshed (at 80 % of 4 s);
    # well within the 1 s timeout, which a loaded machine must not reach (a retry is a second request).
    sim.iam_delay = 0.35
    sim.token_ttl = 4.0
    config = write_config(tmp_path / "config.yaml", config_text(sim, PASSWORD_AUTH, interval=1.0))
    ids = list(sim.instances)
    assert len(ids) == 6
    requests = sim.observed.request_times

    async with exporter_for(config, "logfmt") as exporter:
        await wait_until(lambda: all_up(exporter, ids), what="six instances up")
        assert (sim.observed.iam_requests, sim.observed.tokens_issued) == (1, 1)
        await wait_sim(lambda: sim.observed.tokens_issued >= 2, what="the token refresh")
        refreshed = sim.token_issue_times[1]
        await wait_sim(lambda: all(any(t > refreshed for t in requests[i]) for i in ids),
                       what="every instance polled with the refreshed token")
        metrics = await exporter.scrape()

    # One IAM request per token for the whole project, not one per instance.
    assert (sim.observed.iam_requests, sim.observed.tokens_issued) == (2, 2)
    samples = parse_samples(metrics)
    assert_polled_right(samples, sim)
    assert value(samples, "htap_api_requests_total", api="iam_token", code="201") == 2
    assert sim.observed.auth_failures == 0
    assert_no_secrets(sim, stderr=exporter.logs(), metrics=metrics)


# --- rejected credentials -----------------------------------------------------------------------

REJECTED = {
    "aksk": (f"type: aksk\naccess_key: {AK}\nsecret_key: {WRONG_SK}", "logfmt"),
    "password": (f"type: password\ndomain: {SIM_DOMAIN}\nusername: {USER}\npassword: {WRONG_PASSWORD}", "json"),
}


@pytest.mark.parametrize("kind", list(REJECTED))
async def test_rejected_credentials_are_not_retried_in_a_loop(kind: str, sim: RecordingSimulator,
                                                              tmp_path: Path) -> None:
    auth, log_format = REJECTED[kind]
    config = write_config(tmp_path / "config.yaml", config_text(sim, auth, interval=0.5))
    ids = list(sim.instances)

    async with exporter_for(config, log_format) as exporter:
        await wait_sim(lambda: sim.observed.auth_failures >= 1, what="the first rejection")
        first = sim.observed.auth_failure_times[0]
        await wait_until(lambda: all_up(exporter, ids, up=0), what="every instance down")
        # A fixed window: what must be shown is that nothing more happens in it.
        await asyncio.sleep(max(0.0, first + REJECTION_WINDOW - time.time()))
        assert sim.observed.auth_failures == 1, sim.observed.auth_failure_times
        metrics = await exporter.scrape()
    samples = parse_samples(metrics)

    assert sim.observed.requests == {}  # no request ever got through
    if kind == "aksk":
        assert sim.observed.iam_requests == 0
        assert value(samples, "htap_api_requests_total", api="list_sessions", code="401") == 1
    else:
        assert (sim.observed.iam_requests, sim.observed.tokens_issued) == (1, 0)
        assert value(samples, "htap_api_requests_total", api="iam_token", code="401") == 1
        assert value(samples, "htap_api_requests_total", api="list_sessions", code="401") is None
    assert sum(s.value for s in samples if s.name == "htap_api_requests_total") == 1

    # Every instance kept polling on its (backed-off) schedule, and each of those failed polls
    # was counted with reason auth, though only one of them reached the cloud.
    logs = exporter.logs()
    for instance_id in ids:
        assert value(samples, "htap_up", instance_id=instance_id) == 0
        assert value(samples, "htap_sessions", instance_id=instance_id) is None
        errors = errors_of(samples, instance_id)
        assert {r: n for r, n in errors.items() if r != "auth"} == {r: 0 for r in REASONS if r != "auth"}
        logged = sum(1 for line in exporter.log_lines
                     if log_line_has(line, log_format, "poll failed", instance_id=instance_id, reason="auth"))
        assert errors["auth"] >= 2, errors
        assert errors["auth"] <= logged <= errors["auth"] + 1, (errors, logged)
    assert "not retried for another" in logs
    assert "Traceback" not in logs
    assert_log_format(exporter, log_format)
    assert_no_secrets(sim, stderr=logs, metrics=metrics)


# --- --config.check with secrets from the environment ------------------------------------------------

ENV = {"HTAP_TEST_AK": ENV_AK, "HTAP_TEST_SK": ENV_SK, "HTAP_TEST_SECURITY_TOKEN": ENV_SECURITY_TOKEN,
       "HTAP_TEST_PASSWORD": ENV_PASSWORD, "HTAP_TEST_TOKEN": ENV_TOKEN}


def env_config(*, extra_token_key: str = "") -> str:
    return textwrap.dedent(f"""\
        projects:
          - project_id: {"a" * 32}
            region: cn-north-4
            auth:
              type: aksk
              access_key: ${{HTAP_TEST_AK}}
              secret_key: ${{HTAP_TEST_SK}}
              security_token: ${{HTAP_TEST_SECURITY_TOKEN}}
            instances: [{instance_id_for(0)}]
          - project_id: {"b" * 32}
            region: cn-north-4
            auth:
              type: password
              domain: {SIM_DOMAIN}
              username: {USER}
              password: "${{HTAP_TEST_PASSWORD}}"
            instances: [{instance_id_for(1)}]
          - project_id: {"c" * 32}
            region: cn-north-4
            auth:
              type: token
              token: ${{HTAP_TEST_TOKEN}}
              {extra_token_key}
            instances: [{instance_id_for(2)}]
        """)


async def test_config_check_masks_secrets_from_the_environment(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", env_config())
    code, out, err = await config_check(config, ENV)
    assert code == 0, out + err
    lines = out.splitlines()
    assert "  auth: aksk (access_key=******** secret_key=******** security_token=********)" in lines, out
    assert f"  auth: password (domain={SIM_DOMAIN} username={USER} password=********)" in lines, out
    assert "  auth: token (token=********)" in lines, out
    assert lines[-1] == "OK: 3 project(s), 3 instance(s)", out
    assert_no_secrets(None, stdout=out, stderr=err)

    # A config error next to an expanded secret names the place, never the value.
    broken = write_config(tmp_path / "broken.yaml", env_config(extra_token_key="token_file: ${HTAP_TEST_SK}"))
    code, out, err = await config_check(broken, ENV)
    assert code == 1, out + err
    assert out == ""
    assert err.strip() == f"htap-exporter: {broken}: projects[2].auth.token: give either token or token_file, not both"
    assert_no_secrets(None, stdout=out, stderr=err)

    # An unset variable is named.
    code, out, err = await config_check(config, {k: v for k, v in ENV.items() if k != "HTAP_TEST_SK"})
    assert code == 1
    assert "projects[0].auth.secret_key: environment variable HTAP_TEST_SK is not set" in err, err
    assert_no_secrets(None, stdout=out, stderr=err)
