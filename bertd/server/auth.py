"""Bearer-token auth for /api/v1/* when API_TOKEN is set (health, openapi.json and docs stay open)."""

from __future__ import annotations

import hmac

from aiohttp import web
from loguru import logger

from bertd.server.config import Config
from bertd.server.errors import Handler, error_response
from bertd.server.keys import CONFIG

OPEN_PATHS = ("/api/v1/health", "/api/v1/openapi.json", "/api/v1/docs")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _supplied_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    # Browsers cannot set headers on a WebSocket or on a plain download link: those pass ?token=.
    if request.headers.get("Upgrade", "").lower() == "websocket" or (
            request.method == "GET" and request.path.endswith("/download")):
        return request.query.get("token")
    return None


def token_matches(supplied: str | None, expected: str) -> bool:
    # Compare bytes: compare_digest raises on non-ASCII str, which would turn a bad token into a 500.
    return supplied is not None and hmac.compare_digest(supplied.encode("utf-8"), expected.encode("utf-8"))


def needs_token(path: str) -> bool:
    if path == "/metrics":
        return True
    return path.startswith("/api/v1/") and not any(
        path == open_path or path.startswith(open_path + "/") for open_path in OPEN_PATHS
    )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    expected = request.app[CONFIG].api_token
    if expected is None or not needs_token(request.path) or token_matches(_supplied_token(request), expected):
        return await handler(request)
    response = error_response(401, "unauthorized",
                              "missing or wrong API token: send the header 'Authorization: Bearer <API_TOKEN>' "
                              "(WebSockets may pass ?token=<API_TOKEN>)")
    response.headers["WWW-Authenticate"] = 'Bearer realm="bertd"'
    return response


def warn_if_exposed(config: Config) -> None:
    if config.api_token is None and config.host not in LOOPBACK_HOSTS:
        logger.warning("listening on {} without API_TOKEN: anyone who can reach this port can train, stop and "
                       "delete tasks; set API_TOKEN or listen on 127.0.0.1", config.host)
