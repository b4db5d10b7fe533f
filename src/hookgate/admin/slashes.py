"""A trailing-slash redirect that names no host.

Starlette redirects `/api/v1/events/` to `/api/v1/events` with an absolute URL built from
the request's `Host` header, so `Host: evil.example` got `Location:
http://evil.example/api/v1/events` back (a poisoned cache or a phishing link). The same
redirect with a relative `Location` (RFC 9110 section 10.2.2 allows it) needs no host.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.responses import RedirectResponse
from starlette.routing import Match, Router


def relative_slash_redirects(router: Router) -> None:
    """Make `router` redirect a path that matches only with (or without) a trailing slash
    to that path, relative to the host the client asked."""
    router.redirect_slashes = False
    not_found = router.default

    async def default(scope: Any, receive: Any, send: Any) -> None:
        path: str = scope.get("path", "/")
        if scope["type"] == "http" and path != "/":
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            probe = {**scope, "path": other}
            # "//host" would be a network-path reference: never redirect to one.
            if (
                other
                and not other.startswith("//")
                and any(route.matches(probe)[0] is not Match.NONE for route in router.routes)
            ):
                location = quote(other)
                query = scope.get("query_string", b"")
                if query:
                    location += "?" + query.decode("latin-1")
                await RedirectResponse(location, 307)(scope, receive, send)
                return
        await not_found(scope, receive, send)

    router.default = default
