"""POST /api/v1/tickets: a single-use, short-lived ticket for a URL that cannot carry the
Authorization header (a WebSocket, a download link), so the API token never goes into a URL."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import unquote

from aiohttp import web

from bertd.api.request_parsing import read_json
from bertd.schema.requests import TicketRequest
from bertd.schema.validation import parse
from bertd.server.keys import TICKETS
from bertd.server.responses import json_response


async def issue_ticket(request: web.Request) -> web.Response:
    # An empty body asks for a ticket good for any WebSocket or download (request.read() is cached,
    # so read_json reads the same bytes).
    body = parse(TicketRequest, await read_json(request) if await request.read() else {})
    book = request.app[TICKETS]
    ticket = book.issue(unquote(body.path) if body.path is not None else None)
    expires_at = datetime.fromtimestamp(ticket.expires_at_unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json_response({"ticket": ticket.value, "path": ticket.path, "expires_at": expires_at,
                          "expires_in_seconds": book.lifetime_seconds, "single_use": True}, status=201)
