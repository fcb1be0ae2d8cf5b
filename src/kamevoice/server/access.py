"""Who may talk to the server: the Host allow-list, the optional bearer tokens, the Origin check.

DNS rebinding: a page on `evil.example` whose name is made to resolve to 127.0.0.1
reaches a loopback server with the browser's blessing, and an Origin check that
compares Origin with Host passes (the page chose both). So every route first checks
the Host header against names the server answers to: loopback names, IP literals
(a page can only reach an address literal it is served from, which is no rebinding),
the configured bind host, and `server.allowed_hosts`.
"""

from __future__ import annotations

import hmac
import ipaddress
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


# Names that always mean this machine.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
# Bind addresses that name no host a client could address.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def host_name(host_header: str) -> str:
    """The name part of a Host header (`name:port`, `[v6]:port`), lower-cased, without a final dot."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_ok(host_header: str | None, allowed: list[str], bound: str) -> bool:
    """Whether a request's Host is one this server answers to (see module doc); `*` allows any."""
    if "*" in allowed:
        return True
    if not host_header:
        return False
    name = host_name(host_header)
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    names = {host_name(h) for h in allowed}
    if bound not in WILDCARD_HOSTS:
        names.add(host_name(bound))
    return name in names


def bearer_ok(request: web.Request, token: str) -> bool:
    """The request carries `token` as `Authorization: Bearer ...` (constant-time compare)."""
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))
