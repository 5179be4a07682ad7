"""Answers every API family gives alike: the cloud's error body and the page window check."""

from __future__ import annotations

from aiohttp import web


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error_code": code, "error_msg": message}, status=status, headers=headers)


def page_window(request: web.Request) -> tuple[int, int] | web.Response:
    """The request's `limit` and `offset`, validated as the API does, or its 400 answer."""
    try:
        limit = int(request.query.get("limit", "100"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        return error(400, "DBS.200001", "Invalid parameter: limit and offset must be integers.")
    if not 1 <= limit <= 100 or offset < 0:
        return error(400, "DBS.200001", "Invalid parameter: limit must be 1-100, offset >= 0.")
    return limit, offset
