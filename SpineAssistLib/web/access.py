"""Who may open the page: 127.0.0.1 by default; any other address only with a random token in the URL.

As Jupyter does: the first request carries ``?token=...``; the answer sets a same-site, HTTP-only
cookie holding it, and every later request (scripts, the websocket) is let through by the cookie.
A request with neither gets 403 and no page. The token is compared in constant time.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any, Awaitable, Callable
from urllib.parse import quote

COOKIE = "spineassist_token"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def page_url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={quote(token)}" if token else "")


def token_middleware(token: str) -> Any:
    """An aiohttp middleware letting through only requests that carry ``token`` (query or cookie)."""
    from aiohttp import web

    @web.middleware
    async def check(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        given = request.query.get("token")
        if given is not None and secrets.compare_digest(given, token):
            response = await handler(request)
            try:
                response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
            except (AttributeError, RuntimeError):   # a websocket already switched protocols: the cookie is set
                pass
            return response
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and secrets.compare_digest(cookie, token):
            return await handler(request)
        return web.Response(status=403, text="SpineAssist: open the address with its ?token=... as printed "
                                             "by `spineassist view`.\n")

    return check


__all__ = ["COOKIE", "LOCAL_HOSTS", "is_loopback", "new_token", "page_url", "token_middleware"]
