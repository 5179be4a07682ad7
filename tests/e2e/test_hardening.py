"""Hardening, through the real CLI: the operator's mistakes that used to fail only later (or hang),
hostile servers echoing secrets, hostile clients holding connections, signals during start."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import ssl
import sys
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web

from htap_exporter.simulator import SIM_TOKEN, Simulator, instance_id_for, start
from tests.commands import run_cli_async as run_cli
from tests.e2e.harness import Exporter, value, wait_until, write_config
from tests.fakes import RunningSimulator


def project_text(*, region: str = "cn-north-4", endpoint: str | None = None, auth: str = "",
                 extra: str = "", instance: str = instance_id_for(0)) -> str:
    auth = auth or f"      type: token\n      token: {SIM_TOKEN}\n"
    return (
        "poll:\n  interval: 1s\n  timeout: 1s\n"
        "projects:\n"
        "  - project_id: 0123456789abcdef0123456789abcdef\n"
        f"    region: {region}\n"
        + (f"    endpoint: {endpoint}\n" if endpoint else "")
        + extra
        + f"    auth:\n{auth}"
        f"    instances:\n      - id: {instance}\n"
    )


# --- 6: mistakes --config.check used to accept -------------------------------------------------

async def test_region_typo_is_refused_listing_the_known_regions(tmp_path) -> None:
    config = write_config(tmp_path / "config.yaml", project_text(region="cn-noth-4"))
    code, out, err = await run_cli("--config.file", str(config), "--config.check")
    assert (code, out) == (1, ""), err
    assert err.count("\n") == 1 and err.startswith(f"htap-exporter: {config}: projects[0].region: unknown region"), err
    assert "did you mean cn-north-4?" in err and "cn-north-4, cn-north-9" in err and "set endpoint" in err

    # An unknown region is fine with an explicit endpoint (a new region, a private deployment).
    config = write_config(tmp_path / "config.yaml",
                          project_text(region="xx-new-1", endpoint="https://gaussdb.xx-new-1.example.com"))
    code, out, err = await run_cli("--config.file", str(config), "--config.check")
    assert code == 0, err


async def test_secret_that_looks_like_an_unexpanded_variable_is_refused(tmp_path) -> None:
    auth = "      type: aksk\n      access_key: $HW_ACCESS_KEY\n      secret_key: ${HW_SECRET_KEY}\n"
    config = write_config(tmp_path / "config.yaml", project_text(auth=auth))
    code, out, err = await run_cli("--config.file", str(config), "--config.check",
                                   env={"HW_ACCESS_KEY": "AKVALUE123456", "HW_SECRET_KEY": "SKVALUE123456"})
    assert (code, out) == (1, "")
    assert err == (f"htap-exporter: {config}: projects[0].auth.access_key: looks like an unexpanded environment"
                   " variable: write ${HW_ACCESS_KEY} to read it from the environment (a literal value starting"
                   " with $ can go in access_key_file)\n")


# --- 7: secret files that hang or fill memory ---------------------------------------------------

@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "huge", "directory"])
async def test_secret_file_must_be_a_small_regular_file(tmp_path, kind) -> None:
    if kind == "dev_zero":
        path, problem = Path("/dev/zero"), "is not a regular file (a device)"
    elif kind == "fifo":
        path, problem = tmp_path / "token.fifo", "is not a regular file (a FIFO)"
        os.mkfifo(path)
    elif kind == "huge":
        path, problem = tmp_path / "token.txt", "is larger than 64 KiB"
        path.write_text("t" * (64 * 1024 + 1))
    else:
        path, problem = tmp_path, "is not a regular file (a directory)"
    config = write_config(tmp_path / "config.yaml",
                          project_text(auth=f"      type: token\n      token_file: {path}\n"))
    code, out, err = await run_cli("--config.file", str(config), "--config.check")
    assert (code, out, err) == (1, "", f"htap-exporter: {config}: projects[0].auth.token_file: {path} {problem}\n")


async def test_reload_onto_a_fifo_secret_fails_at_once_and_the_server_keeps_answering(
        tmp_path, simulator: RunningSimulator) -> None:
    (tmp_path / "token.txt").write_text(SIM_TOKEN)
    good = project_text(endpoint=simulator.base_url, auth="      type: token\n      token_file: token.txt\n")
    config = write_config(tmp_path / "config.yaml", good)
    fifo = tmp_path / "token.fifo"
    os.mkfifo(fifo)
    async with Exporter(["--config.file", str(config)]) as exporter:
        write_config(config, good.replace("token_file: token.txt", f"token_file: {fifo}"))
        status, body = await asyncio.wait_for(exporter.post("/-/reload"), 10)
        assert status == 500 and f"{fifo} is not a regular file (a FIFO)" in body, body
        assert await asyncio.wait_for(exporter.get("/-/healthy"), 5) == (200, "Healthy.\n")
        samples = await exporter.samples()
        assert value(samples, "htap_config_last_reload_successful") == 0


# --- 8: clear-text endpoints, own CA bundles, proxies ---------------------------------------------

async def test_http_to_a_remote_host_needs_allow_http_and_then_warns_at_every_start(tmp_path) -> None:
    remote = "http://gaussdb.cn-north-4.example.invalid"
    config = write_config(tmp_path / "config.yaml", project_text(endpoint=remote))
    code, out, err = await run_cli("--config.file", str(config), "--config.check")
    assert (code, out, err) == (
        1, "", f"htap-exporter: {config}: projects[0].endpoint: http:// to a non-loopback host sends credentials"
               " in clear text: use https, or set projects[0].allow_http: true\n")

    # IAM carries the password: an http iam_endpoint is refused the same way with password auth.
    password = "      type: password\n      domain: d\n      username: u\n      password: pw-12345678\n"
    config = write_config(tmp_path / "config.yaml", project_text(
        endpoint="https://gaussdb.example.com", extra="    iam_endpoint: http://iam.example.com\n", auth=password))
    code, out, err = await run_cli("--config.file", str(config), "--config.check")
    assert code == 1 and "projects[0].iam_endpoint: http:// to a non-loopback host" in err, err

    config = write_config(tmp_path / "config.yaml", project_text(endpoint=remote, extra="    allow_http: true\n"))
    code, out, err = await run_cli("--config.file", str(config), "--config.check")
    assert code == 0 and "allow_http=true" in out, err
    assert "allow_http: credentials and sessions travel unencrypted" in err
    for _ in range(2):  # every start says it again
        async with Exporter(["--config.file", str(config), "--log.format", "json"]) as exporter:
            await wait_until(lambda: _async(any("allow_http" in line for line in exporter.log_lines)),
                             what="the allow_http warning")
        (line,) = [json.loads(line) for line in exporter.log_lines if "allow_http" in line]
        assert line["level"] == "warn" and line["url"] == remote and line["key"] == "endpoint"
        assert line["project_id"] == "0123456789abcdef0123456789abcdef"


async def _async(result: bool) -> bool:
    return result


async def test_ca_file_trusts_a_private_ca_for_that_project(tmp_path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    sim = Simulator(instances=1)
    runner, base_url = await start(sim, ssl_context=server_context)
    try:
        assert base_url.startswith("https://127.0.0.1:")
        trusted = write_config(tmp_path / "trusted.yaml",
                               project_text(endpoint=base_url, extra="    ca_file: ca.pem\n"))
        untrusted = write_config(tmp_path / "untrusted.yaml", project_text(endpoint=base_url))
        async with Exporter(["--config.file", str(trusted)]) as exporter:
            await wait_until(lambda: _up(exporter, 1), what="htap_up 1 through the private CA")
        async with Exporter(["--config.file", str(untrusted)]) as exporter:
            # The log line is written before the failure is published, and read from stderr a moment later.
            async def down_and_said_why() -> bool:
                return await _up(exporter, 0) and any("certificate" in line.lower() for line in exporter.log_lines)
            await wait_until(down_and_said_why, what="htap_up 0 without the CA, and a log line saying why")
        (tmp_path / "bad.pem").write_text("not a certificate\n")
        config = write_config(tmp_path / "bad.yaml", project_text(endpoint=base_url, extra="    ca_file: bad.pem\n"))
        code, out, err = await run_cli("--config.file", str(config), "--config.check")
        assert (code, err) == (1, f"htap-exporter: {config}: projects[0].ca_file: {tmp_path / 'bad.pem'} holds"
                                  " no usable PEM CA certificate\n")
    finally:
        await runner.cleanup()


async def _up(exporter: Exporter, expected: int) -> bool:
    return value(await exporter.samples(), "htap_up", instance_id=instance_id_for(0)) == expected


async def test_http_proxy_from_the_environment_and_no_proxy(tmp_path, simulator: RunningSimulator) -> None:
    """A forward proxy on loopback sees the exporter's API requests when HTTP_PROXY names it, and none
    when NO_PROXY exempts the host (HTTPS_PROXY works the same way, through CONNECT)."""
    forwarded: list[str] = []

    async def forward(request: web.Request) -> web.Response:
        forwarded.append(str(request.url))
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, str(request.url), headers=request.headers) as answer:
                return web.Response(status=answer.status, body=await answer.read(),
                                    content_type=answer.content_type)

    proxy_app = web.Application()
    proxy_app.router.add_route("*", "/{tail:.*}", forward)
    proxy_runner = web.AppRunner(proxy_app, access_log=None)
    await proxy_runner.setup()
    site = web.TCPSite(proxy_runner, "127.0.0.1", 0)
    await site.start()
    proxy_port = proxy_runner.addresses[0][1]
    try:
        config = write_config(tmp_path / "config.yaml", project_text(endpoint=simulator.base_url))
        proxy = {"HTTP_PROXY": f"http://127.0.0.1:{proxy_port}", "NO_PROXY": ""}
        async with Exporter(["--config.file", str(config)], env=proxy) as exporter:
            await wait_until(lambda: _up(exporter, 1), what="htap_up 1 through the proxy")
        assert forwarded and all("/htap/process" in url for url in forwarded), forwarded
        forwarded.clear()
        async with Exporter(["--config.file", str(config)], env={**proxy, "NO_PROXY": "127.0.0.1"}) as exporter:
            await wait_until(lambda: _up(exporter, 1), what="htap_up 1 directly")
        assert forwarded == []
    finally:
        await proxy_runner.cleanup()


# --- 1: slowloris ---------------------------------------------------------------------------------

SLOWLORIS_CONNECTIONS = 1100
HALF_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: exporter\r\nUser-Agent: slow"


@pytest.fixture
def many_files():
    """This test process holds ~1,100 client sockets: raise its own soft limit for the test."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SLOWLORIS_CONNECTIONS * 2 + 256
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs a hard open-file limit of {wanted}, this machine allows {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _timed_get(exporter: Exporter, path: str) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _ = await asyncio.wait_for(exporter.get(path), 10)
    return status, loop.time() - started


@pytest.mark.slow
@pytest.mark.parametrize("limits", ["soft_1024", "soft_and_hard_1024"])
async def test_slowloris_connections_are_closed_and_scrapes_go_on(
        tmp_path, simulator: RunningSimulator, many_files, limits) -> None:
    """~1,100 connections that send half a request, against an exporter started under the common
    soft limit of 1,024 open files (and, second case, a hard limit of 1,024 that cannot be raised)."""
    resource = many_files

    def start_limited() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024 if limits == "soft_and_hard_1024" else hard))

    config = write_config(tmp_path / "config.yaml", project_text(endpoint=simulator.base_url))
    read_timeout = 3.0
    exporter = Exporter(["--config.file", str(config), "--web.read-timeout", f"{read_timeout:g}s"],
                        preexec_fn=start_limited)
    attackers: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    async with exporter:
        host, port = exporter.url.removeprefix("http://").rsplit(":", 1)
        loop = asyncio.get_running_loop()
        attack_started = loop.time()
        refused_connects = 0
        for _ in range(SLOWLORIS_CONNECTIONS):
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
            except (OSError, asyncio.TimeoutError):
                refused_connects += 1
                continue
            writer.write(HALF_REQUEST)
            attackers.append((reader, writer))
        try:
            # Under attack: health and metrics still answer.
            health, health_seconds = await _timed_get(exporter, "/-/healthy")
            metrics, metrics_seconds = await _timed_get(exporter, "/metrics")
            assert (health, metrics) == (200, 200)

            # Every half request is closed by the server: evicted for newcomers, or at the read timeout.
            async def closed(reader: asyncio.StreamReader) -> None:
                try:
                    await reader.read(65536)
                except OSError:
                    pass
            # Generous for a loaded machine: without the guard they are never closed.
            await asyncio.wait_for(asyncio.gather(*(closed(reader) for reader, _ in attackers)), read_timeout * 10)
            all_closed_after = loop.time() - attack_started
            log_bytes = sum(len(line) + 1 for line in exporter.log_lines)
            print(f"\n[{limits}] {len(attackers)} slowloris connections opened ({refused_connects} refused at connect);"
                  f" /-/healthy {health_seconds * 1000:.0f} ms, /metrics {metrics_seconds * 1000:.0f} ms under attack;"
                  f" all closed by the server {all_closed_after:.1f} s after the attack began; {log_bytes} bytes of log")
            assert log_bytes < 20_000, exporter.logs()[-3000:]
            assert exporter.process is not None and exporter.process.returncode is None
            # And after it: business as usual.
            assert (await _timed_get(exporter, "/metrics"))[0] == 200
        finally:
            for _, writer in attackers:
                writer.close()


async def test_idle_keep_alive_and_stalled_second_request_are_closed(tmp_path, simulator: RunningSimulator) -> None:
    config = write_config(tmp_path / "config.yaml", project_text(endpoint=simulator.base_url))
    async with Exporter(["--config.file", str(config), "--web.read-timeout", "1s"]) as exporter:
        host, port = exporter.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: exporter\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"Healthy.\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: exp")  # a second request that stalls
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        finally:
            writer.close()


# --- 9: SIGHUP during start ----------------------------------------------------------------------------

def _catches_sighup(pid: int) -> bool:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)))
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/PID/status")
async def test_sighup_while_starting_reloads_instead_of_killing(tmp_path, simulator: RunningSimulator) -> None:
    config = write_config(tmp_path / "config.yaml", project_text(endpoint=simulator.base_url))
    exporter = Exporter(["--config.file", str(config)])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "htap_exporter", *exporter.args, env=exporter.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    exporter.process = process
    exporter._reader = asyncio.create_task(exporter._read_stderr())
    try:
        # The handler must be in place long before the server listens (imports take ~0.3 s).
        await wait_until(lambda: _async(process.returncode is not None or _catches_sighup(process.pid)
                                        or bool(exporter.url)), timeout=20, what="SIGHUP caught or listening")
        assert process.returncode is None and not exporter.url, (
            "no SIGHUP handler before the server listened:\n" + exporter.logs())
        sent = 0
        while not exporter.url and process.returncode is None:
            process.send_signal(signal.SIGHUP)
            sent += 1
            await asyncio.sleep(0.02)
        assert process.returncode is None, f"killed by SIGHUP number {sent} during start:\n{exporter.logs()}"
        assert sent >= 3, sent
        await wait_until(lambda: _async(any("configuration reloaded" in line for line in exporter.log_lines)),
                         what="the reload asked for during start")
        assert await exporter.get("/-/healthy") == (200, "Healthy.\n")
    finally:
        assert await exporter.stop() == 0


# --- 5: secrets echoed back by a server, escaped or in part -------------------------------------------

def fragments(secret: str) -> set[str]:
    """Every 8-character run of the secret's plain, JSON-escaped, repr'd and URL-encoded forms."""
    import urllib.parse
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1],
             urllib.parse.quote(secret, safe="")}
    return {form[i:i + 8] for form in forms for i in range(len(form) - 7)}


def leaks(text: str, secret: str) -> list[str]:
    return sorted(fragment for fragment in fragments(secret) if fragment in text)


async def test_password_echoed_json_escaped_by_iam_never_reaches_the_log(tmp_path, simulator: RunningSimulator) -> None:
    password = 'Päss"word-\\-7f3e9a1c5b2d'
    simulator.sim.users[("acme", "monitor")] = password
    (tmp_path / "password.txt").write_text(password, encoding="utf-8")
    await _put_fault(simulator, "iam", {"kind": "echo"})
    auth = "      type: password\n      domain: acme\n      username: monitor\n      password_file: password.txt\n"
    config = write_config(tmp_path / "config.yaml", project_text(
        endpoint=simulator.base_url, extra=f"    iam_endpoint: {simulator.base_url}\n", auth=auth))
    for log_format in ("logfmt", "json"):
        async with Exporter(["--config.file", str(config), "--log.level", "debug",
                             "--log.format", log_format]) as exporter:
            await wait_until(lambda: _async(any("Bad request" in line for line in exporter.log_lines)),
                             what="the echoed IAM request in the log")
            body, text = await exporter.get("/metrics")
        assert leaks(exporter.logs(), password) == [], exporter.logs()
        assert leaks(text, password) == []


async def test_token_echoed_in_part_never_reaches_the_log(tmp_path, simulator: RunningSimulator) -> None:
    token = "tok-" + "9c4e1a7b3f5d2e8a" * 3
    simulator.sim.static_tokens.add(token)
    await _put_fault(simulator, instance_id_for(0), {"kind": "echo", "part": [9, 30]})
    config = write_config(tmp_path / "config.yaml", project_text(
        endpoint=simulator.base_url, auth=f"      type: token\n      token: {token}\n"))
    async with Exporter(["--config.file", str(config), "--log.level", "debug"]) as exporter:
        await wait_until(lambda: _async(any("Bad request" in line for line in exporter.log_lines)),
                         what="the echoed request in the log")
    assert token[9:30] not in exporter.logs()
    assert leaks(exporter.logs(), token) == [], exporter.logs()


async def _put_fault(simulator: RunningSimulator, target: str, fault: dict[str, object]) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{simulator.base_url}/_sim/faults/{target}", json=fault) as response:
            assert response.status == 200, await response.text()


# --- 11: structured logs ------------------------------------------------------------------------------

LOGFMT_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line: str) -> dict[str, str]:
    return {key: json.loads(raw) if raw.startswith('"') else raw for key, raw in LOGFMT_PAIR.findall(line)}


async def test_log_fields_are_keys_in_json_and_pairs_in_logfmt(tmp_path, simulator: RunningSimulator) -> None:
    good = project_text(endpoint=simulator.base_url)
    lines: dict[str, list[dict[str, object]]] = {}
    for log_format in ("json", "logfmt"):
        config = write_config(tmp_path / f"{log_format}.yaml", good)
        async with Exporter(["--config.file", str(config), "--log.format", log_format]) as exporter:
            write_config(config, good.replace("interval: 1s", "interval: soon"))
            status, _ = await exporter.post("/-/reload")
            assert status == 500
            await wait_until(lambda: _async(any("reload failed" in line for line in exporter.log_lines)),
                             what="the failed reload in the log")
        parse = json.loads if log_format == "json" else parse_logfmt
        lines[log_format] = [parse(line) for line in exporter.log_lines if line.strip()]

    for log_format, parsed in lines.items():
        (failed,) = [line for line in parsed if line["msg"] == "reload failed, keeping the previous configuration"]
        assert failed["level"] == "error" and failed["path"] == "poll.interval", failed
        assert failed["file"] == str(tmp_path / f"{log_format}.yaml")
        assert "soon" in str(failed["error"]) and "soon" not in str(failed["msg"])
        (listening,) = [line for line in parsed if str(line["msg"]).startswith("listening on ")]
        assert listening["msg"] == f"listening on {listening['address']}"
        (polling,) = [line for line in parsed if line["msg"] == "polling"]
        assert str(polling["instances"]) == "1" and str(polling["projects"]) == "1"
    assert [sorted(line) for line in lines["json"]] == [sorted(line) for line in lines["logfmt"]]


# --- 12: the first hour of a new user --------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
async def test_dev_py_demo_shows_what_the_readme_says_and_stops_on_sigint_to_its_pid() -> None:
    stamp = Path(sys.prefix) / ".htap-installed-test"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:  # dev.py would install: not in a test
        pytest.skip("runs dev.py in the up-to-date virtualenv dev.py made (python3 dev.py test)")
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "dev.py"), "demo", "--web.listen-address", "127.0.0.1:0",
        env={**os.environ, "HTAP_VENV": sys.prefix}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True)  # its own group: only its PID gets the signal
    exporter = Exporter([])
    exporter.process = process
    exporter._reader = asyncio.create_task(exporter._read_stderr())
    try:
        await wait_until(lambda: _async(bool(exporter.url) or process.returncode is not None), what="the demo")
        assert exporter.url, exporter.logs()

        # README: "look for lines such as `htap_up{instance_id="…",instance_name="htap-1"} 1.0`"
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        shown = re.search(r"look for lines such as\s+`([^`]+)`", readme)
        assert shown, "README's install section no longer says what to look for"
        pattern = re.compile(re.escape(shown.group(1)).replace("…", '[^"]*'), re.M)

        async def readme_line_shown() -> bool:
            status, text = await exporter.get("/metrics")
            return status == 200 and pattern.search(text) is not None
        await wait_until(readme_line_shown, what=f"{shown.group(1)} in the demo's metrics")

        os.kill(process.pid, signal.SIGINT)  # to dev.py alone, as `kill -INT PID` does
        assert await asyncio.wait_for(process.wait(), 15) == 0
        await asyncio.wait_for(exporter._reader, 5)
        with pytest.raises(ProcessLookupError):  # the exporter under it is gone too
            os.killpg(process.pid, 0)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def test_first_run_without_a_config_file_says_what_to_do(tmp_path) -> None:
    code, out, err = await run_cli(cwd=tmp_path)
    assert (code, out) == (1, "")
    assert err == ("htap-exporter: config.yaml: file not found (give one with --config.file PATH, or try --demo for"
                   " the built-in simulator)\n")


async def test_every_flag_has_help_and_the_license_is_there() -> None:
    code, out, err = await run_cli("--help")
    assert code == 0, err
    options = out.split("options:\n", 1)[1]
    flags = re.findall(r"^  (--[a-z.-]+)", options, re.M)
    assert "--log.level" in flags and "--log.format" in flags
    for flag in flags:
        block = options.split(f"  {flag}", 1)[1].split("\n  --", 1)[0]
        assert re.search(r"[a-z]{3,} [a-z]{2,}", block), f"{flag} has no help text:\n{block}"
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")

