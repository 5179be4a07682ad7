"""Fixtures of the API client tests."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes import RecordingTransport


@pytest.fixture
def transport(http, observed) -> RecordingTransport:
    """The real transport (8 MiB cap, 10 s timeout) on mocked HTTP; each request's (api, code) is
    appended to `observed` and its URL and headers to `transport.sent`."""
    return RecordingTransport(http, asyncio.Semaphore(8), 10.0, 8 * 1024 * 1024,
                              lambda api, code, seconds: observed.append((api, code)))
