"""Bearer-token auth for /api/v1/* when API_TOKEN is set (health, openapi.json and docs stay open).
WebSockets and download links, which cannot send the header, pass `?token=<ticket>` with a ticket
from POST /api/v1/tickets (see tickets.py); the API token itself is never taken from a URL."""

from __future__ import annotations

import hmac

from aiohttp import web
from loguru import logger

from bertd.i18n import Text
from bertd.server.config import Config
from bertd.server.errors import Handler, error_response
from bertd.server.keys import CONFIG, TICKETS

OPEN_PATHS = ("/api/v1/health", "/api/v1/openapi.json", "/api/v1/docs")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _bearer_token(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def takes_ticket(request: web.Request) -> bool:
    """WebSockets and download links: the requests a browser makes without our headers."""
    return request.headers.get("Upgrade", "").lower() == "websocket" or (
        request.method == "GET" and request.path.endswith("/download"))


def token_matches(supplied: str | None, expected: str) -> bool:
    # Compare bytes: compare_digest raises on non-ASCII str, which would turn a bad token into a 500.
    return supplied is not None and hmac.compare_digest(supplied.encode("utf-8"), expected.encode("utf-8"))


def needs_token(path: str) -> bool:
    if path == "/metrics":
        return True
    return path.startswith("/api/v1/") and not any(
        path == open_path or path.startswith(open_path + "/") for open_path in OPEN_PATHS
    )


def _unauthorized(request: web.Request, message: Text) -> web.Response:
    response = error_response(request, 401, "unauthorized", message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="bertd"'
    return response


INTERNAL_PREFIX = "/api/v1/internal/"


def _worker_auth(request: web.Request) -> web.Response | None:
    """Routes only worker boxes call take WORKER_TOKEN (never API_TOKEN, and never in a URL)."""
    expected = request.app[CONFIG].worker_token
    supplied = _bearer_token(request)
    if supplied is not None and expected is None:
        return error_response(request, 403, "forbidden", Text(
            "this bertd takes no workers: start it with BROKER_URL and WORKER_TOKEN to train on other boxes"))
    if expected is not None and token_matches(supplied, expected):
        return None
    return _unauthorized(request, Text("missing or wrong worker token: a worker sends 'Authorization: Bearer "
                                       "<WORKER_TOKEN>', the same secret the API node has"))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(INTERNAL_PREFIX):
        refused = _worker_auth(request)
        return refused if refused is not None else await handler(request)
    expected = request.app[CONFIG].api_token
    if expected is None or not needs_token(request.path):
        return await handler(request)
    bearer = _bearer_token(request)
    if bearer is not None:
        if token_matches(bearer, expected):
            return await handler(request)
        return _unauthorized(request, Text("missing or wrong API token: send the header 'Authorization: Bearer "
                                           "<API_TOKEN>'"))
    ticket = request.query.get("token") if takes_ticket(request) else None
    if ticket is not None:
        if token_matches(ticket, expected):
            return _unauthorized(request, Text(
                "the API token is not taken in a URL (URLs end up in logs and browser history): send it as "
                "'Authorization: Bearer <API_TOKEN>', or pass ?token= with a ticket from POST /api/v1/tickets"))
        if request.app[TICKETS].redeem(ticket, request.path):
            return await handler(request)
        return _unauthorized(request, Text(
            "the ticket in ?token= is unknown, already used, expired or for another path than {path}: ask "
            "POST /api/v1/tickets for a new one (each works once, within a minute)", path=request.path))
    return _unauthorized(request, Text(
        "missing or wrong API token: send the header 'Authorization: Bearer <API_TOKEN>' (WebSockets and "
        "download links may pass ?token= with a ticket from POST /api/v1/tickets)"))


def warn_if_exposed(config: Config) -> None:
    if config.api_token is None and config.host not in LOOPBACK_HOSTS:
        logger.warning("listening on {} without API_TOKEN: anyone who can reach this port can train, stop and "
                       "delete tasks; set API_TOKEN or listen on 127.0.0.1", config.host)
