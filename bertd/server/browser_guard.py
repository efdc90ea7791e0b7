"""The browser guard: what keeps web pages a user visits from driving a bertd on their network.

bertd often runs without API_TOKEN on 127.0.0.1 or a trusted network, so every browser there can
reach it, and any page it opens can try. Before any handler runs, this middleware refuses:
- a Host header that is not one of bertd's names (DNS rebinding: a page on attacker.example whose
  name is made to resolve to 127.0.0.1 would otherwise be "same origin" with bertd);
- a state-changing request (POST, PUT, PATCH, DELETE) or a WebSocket upgrade from another origin
  (cross-site requests: a form post or multipart upload is a "simple" request a browser sends
  without asking; WebSockets are not covered by the same-origin policy at all).
Requests with neither Origin nor Sec-Fetch-Site (curl, scripts, the CLI, workers) are not browsers
acting for a page and pass. CORS stays closed unless ALLOWED_ORIGINS names an origin; for those it
answers preflights and adds the CORS headers.

A small middleware of our own rather than aiohttp-cors: that package predates AppKey, wants every
route registered with it one by one, and knows nothing of the Origin check on writes and WebSockets
that is the point here; the CORS part needed is twenty lines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from bertd.i18n import Text
from bertd.server.errors import Handler, error_response
from bertd.server.keys import BROWSER_POLICY, CONFIG
from bertd.server.origins import BrowserPolicy, machine_names, normalize_origin, origin_is_host, split_host_header

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
# Headers a page on an allowed origin may read: the download's file name, why a call was refused.
CORS_EXPOSED = "Content-Disposition, WWW-Authenticate, Allow"
CORS_MAX_AGE_SECONDS = "600"


async def browser_policy(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the policy the guard applies, built once at start-up."""
    config = app[CONFIG]
    app[BROWSER_POLICY] = BrowserPolicy(tuple(config.allowed_hosts), await asyncio.to_thread(machine_names),
                                        frozenset(config.allowed_origins))
    yield


def _refuse_host(request: web.Request, host_header: str) -> web.Response:
    host = split_host_header(host_header)
    name = host[0] if host else host_header[:200]
    return error_response(
        request, 403, "host_not_allowed",
        Text("refused a request for host {name!r}: it is not an IP address, localhost or this machine's name, "
             "so it may come from a DNS-rebinding web page; if bertd is reached by that name (a reverse proxy, "
             "a container or service name), add it to ALLOWED_HOSTS (e.g. ALLOWED_HOSTS={name})", name=name),
        {"host": name, "setting": "ALLOWED_HOSTS"})


def _refuse_origin(request: web.Request, origin: str | None, fetch_site: str | None) -> web.Response:
    what: Text
    if request.method == "OPTIONS":
        what = Text("the preflight of a cross-origin {method} request",
                    method=request.headers.get("Access-Control-Request-Method"))
    else:
        what = Text("a WebSocket") if request.method == "GET" else Text("a {method} request", method=request.method)
    allowable = normalize_origin(origin) if origin else None
    if allowable:
        source = Text("the web page at {origin}", origin=origin)
    elif origin:
        source = Text("a page with the opaque origin {origin!r} (a sandboxed frame or a local file)", origin=origin)
    else:
        source = Text("a {fetch_site} web page", fetch_site=fetch_site)
    hint = (Text("; to let that origin's pages call the API, add it: ALLOWED_ORIGINS={origin}", origin=allowable)
            if allowable else "")
    return error_response(
        request, 403, "cross_origin_refused",
        Text("refused {what} to {path} from {source}: bertd takes requests that change state, and WebSockets, "
             "only from its own dashboard, from origins listed in ALLOWED_ORIGINS and from clients outside a "
             "browser{hint}", what=what, path=request.path, source=source, hint=hint),
        {"origin": origin, "sec_fetch_site": fetch_site, "setting": "ALLOWED_ORIGINS"})


def _origin_allowed(policy: BrowserPolicy, host_header: str | None, origin: str | None,
                    fetch_site: str | None) -> bool:
    # Sec-Fetch-Site is set by the browser and no page can forge it: same-origin is the dashboard
    # itself (also behind a proxy that rewrites Host), none a user typing the URL.
    if fetch_site in ("same-origin", "none"):
        return True
    if origin is not None:
        normalized = normalize_origin(origin)  # None for the opaque "null" of sandboxes and file://
        return normalized is not None and (
            normalized in policy.allowed_origins or (host_header is not None and origin_is_host(normalized,
                                                                                                host_header)))
    return fetch_site not in ("same-site", "cross-site")


def _is_websocket(request: web.Request) -> bool:
    return request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket"


def _preflight(request: web.Request, origin: str) -> web.Response:
    response = web.Response(status=204, headers={
        "Access-Control-Allow-Methods": CORS_METHODS,
        "Access-Control-Max-Age": CORS_MAX_AGE_SECONDS,
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    })
    # An allowed origin is trusted with whatever headers its page sends (Authorization above all).
    if "Access-Control-Request-Headers" in request.headers:
        response.headers["Access-Control-Allow-Headers"] = request.headers["Access-Control-Request-Headers"]
    response.headers["Access-Control-Allow-Origin"] = origin
    return response


@web.middleware
async def browser_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    policy = request.app[BROWSER_POLICY]
    host_header = request.headers.get("Host")
    if host_header is not None:
        host = split_host_header(host_header)
        if host is None or not policy.host_allowed(host[0]):
            return _refuse_host(request, host_header)
    origin = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site")
    cors_origin = normalize_origin(origin) if origin else None
    if cors_origin not in policy.allowed_origins:
        cors_origin = None
    if request.method == "OPTIONS" and origin and "Access-Control-Request-Method" in request.headers:
        if cors_origin is None:
            return _refuse_origin(request, origin, fetch_site)
        return _preflight(request, origin)
    if (request.method in STATE_CHANGING or _is_websocket(request)) and not _origin_allowed(
            policy, host_header, origin, fetch_site):
        return _refuse_origin(request, origin, fetch_site)
    response = await handler(request)
    if policy.allowed_origins and not response.prepared:
        response.headers.add("Vary", "Origin")
        if cors_origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin  # type: ignore[assignment]
            response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
    return response
