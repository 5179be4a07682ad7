"""The web app in process over real HTTP: access control, bcrypt caching, negotiation, HEAD, gzip."""

from __future__ import annotations

import asyncio
import base64
import gzip
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from htap_exporter.exposition.store import Pieces
from htap_exporter.clock import RateLimiter
from htap_exporter.web.basicauth import BasicAuthVerifier
from htap_exporter.web.server import ServerState, make_app
from htap_exporter.web.access import WebAccess, peer_sans
from htap_exporter.web.webconfig import WebConfigWatcher
from tests.fakes import FakeClock
from tests.webtls import CountingCheck, bcrypt_hash


class FakeStore:
    def __init__(self) -> None:
        self.generation = 1
        self.renders = 0

    def render(self, openmetrics: bool = False) -> bytes:
        self.renders += 1
        return b'# HELP htap_up Up.\n# TYPE htap_up gauge\nhtap_up{instance_id="a"} 1.0\n'

    async def body(self, openmetrics: bool = False) -> list[bytes]:
        return [self.render(openmetrics)]

    async def pieces(self, openmetrics: bool = False) -> tuple[list[bytes | Pieces], int]:
        body = self.render(openmetrics)
        return [Pieces.of(body.splitlines(keepends=True))], len(body)

    def families(self, openmetrics: bool = False) -> list[tuple[bytes, list[bytes]]]:
        header, sample = self.render(openmetrics).split(b"gauge\n")
        return [(header + b"gauge\n", [sample])]

    def statuses(self) -> list:
        return []


class FakeSelf:
    def render(self, openmetrics: bool = False) -> bytes:
        return b"# HELP htap_exporter_build_info V.\n# TYPE htap_exporter_build_info gauge\nhtap_exporter_build_info 1.0\n"


def auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def client_for(tmp_path: Path, web_text: str | None, check: CountingCheck | None = None) -> TestClient:
    watcher = None
    if web_text is not None:
        (tmp_path / "web.yml").write_text(web_text)
        watcher = WebConfigWatcher(tmp_path / "web.yml")

    async def reload() -> str | None:
        return None

    state = ServerState(store=FakeStore(), self_metrics=FakeSelf(), is_ready=lambda: True, reload=reload,  # type: ignore[arg-type]
                        access=WebAccess(watcher, BasicAuthVerifier(check) if check else None))
    client = TestClient(TestServer(make_app(state)))
    await client.start_server()
    return client


async def test_a_scrape_after_the_first_does_not_call_bcrypt(tmp_path: Path) -> None:
    check = CountingCheck()
    client = await client_for(tmp_path, f"basic_auth_users:\n  prometheus: {bcrypt_hash('pw')}\n", check)
    try:
        for _ in range(10):
            response = await client.get("/metrics", headers=auth("prometheus", "pw"))
            assert response.status == 200
        assert check.calls == 1
        response = await client.get("/metrics", headers=auth("prometheus", "nope"))
        assert response.status == 401 and check.calls == 2
        response = await client.get("/metrics", headers=auth("prometheus", "nope"))
        assert response.status == 401 and check.calls == 2  # a refused password is remembered too
        response = await client.get("/metrics")
        assert response.status == 401 and check.calls == 2  # no credentials: nothing to check
    finally:
        await client.close()


async def test_requests_never_look_at_the_files_the_watcher_does(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import htap_exporter.web.webconfig as webconfig

    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  prometheus: {bcrypt_hash('old')}\n")
    watcher = WebConfigWatcher(tmp_path / "web.yml")
    looked = []
    signature = webconfig._signature
    monkeypatch.setattr(webconfig, "_signature", lambda paths: looked.append(paths) or signature(paths))

    async def reload() -> str | None:
        return None

    state = ServerState(store=FakeStore(), self_metrics=FakeSelf(), is_ready=lambda: True, reload=reload,  # type: ignore[arg-type]
                        access=WebAccess(watcher))
    async with TestClient(TestServer(make_app(state))) as client:
        (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  prometheus: {bcrypt_hash('new')}\n")
        for _ in range(20):
            assert (await client.get("/metrics", headers=auth("prometheus", "old"))).status == 200
        assert looked == []  # no stat, no read per request
        await asyncio.to_thread(watcher.check)  # what the watch task does once a second
        assert (await client.get("/metrics", headers=auth("prometheus", "new"))).status == 200
        assert (await client.get("/metrics", headers=auth("prometheus", "old"))).status == 401
        probes = [(await client.get(path)).status for path in ("/-/healthy", "/-/ready")]
        assert probes == [200, 200]  # the probes need no credentials


async def test_head_and_gzip(tmp_path: Path) -> None:
    client = await client_for(tmp_path, None)
    try:
        get = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
        body = await get.read()
        head = await client.head("/metrics", headers={"Accept-Encoding": "identity"})
        assert head.status == 200 and await head.read() == b""
        assert head.headers["Content-Length"] == str(len(body))
        assert head.headers["Content-Type"] == get.headers["Content-Type"]
        zipped = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await zipped.read()) == body
        assert "Accept-Encoding" in zipped.headers["Vary"]
    finally:
        await client.close()


async def test_rate_limit(tmp_path: Path) -> None:
    client = await client_for(tmp_path, "rate_limit:\n  interval: 1h\n  burst: 2\n")
    try:
        statuses = [(await client.get("/-/healthy")).status for _ in range(4)]
        assert statuses == [200, 200, 429, 429]
    finally:
        await client.close()


def test_rate_limit_refills_on_its_clock() -> None:
    clock = FakeClock(start=0.0)
    bucket = RateLimiter.one_per(1.0, clock, burst=2)
    assert [bucket.allow() for _ in range(3)] == [True, True, False]
    clock.now = 1.0
    assert [bucket.allow() for _ in range(2)] == [True, False]
    clock.now = 100.0
    assert [bucket.allow() for _ in range(3)] == [True, True, False]



def test_peer_sans_as_go_writes_them() -> None:
    cert = {"subjectAltName": (("DNS", "a.example"), ("IP Address", "0:0:0:0:0:0:0:1"), ("email", "x@y"),
                               ("URI", "spiffe://t/p"), ("DirName", "ignored"))}
    assert peer_sans(cert) == {"a.example", "::1", "x@y", "spiffe://t/p"}
    assert peer_sans(None) == set()


@pytest.mark.parametrize("headers, status", [
    ({"Origin": "http://evil.example"}, 403),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ({}, 200),
])
async def test_reload_guard(tmp_path: Path, headers: dict[str, str], status: int) -> None:
    client = await client_for(tmp_path, None)
    try:
        assert (await client.post("/-/reload", headers=headers)).status == status
    finally:
        await client.close()
