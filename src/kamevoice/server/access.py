"""Who may open a conversation: the optional bearer token and the browser Origin check."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from aiohttp import web


def token_ok(request: web.Request, token: str | None) -> bool:
    """No token configured, or the request carries it (`Authorization: Bearer` or `?token=`)."""
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else request.query.get("token", "")
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def origin_ok(request: web.Request, allowed: list[str]) -> bool:
    """Whether the request's Origin may talk to us.

    Requests without an Origin header (command-line and Python clients) pass:
    the check exists to stop other web sites' pages from using a visitor's
    browser to reach a local server. With no allowed list, an Origin passes
    when its host:port is the one the request was addressed to.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    if allowed:
        return False
    parts = urlsplit(origin)
    return bool(parts.netloc) and parts.netloc.lower() == request.host.lower()
