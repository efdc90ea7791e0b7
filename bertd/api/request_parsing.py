"""Reading what a request carries: a JSON body, and query parameters by name and range."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bertd.i18n import Text
from bertd.server.errors import ApiError, validation_error


async def read_json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       Text("the request body must be JSON (Content-Type: application/json), got {content_type!r}",
                            content_type=request.content_type),
                       {"content_type": request.content_type})
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError as error:  # UnicodeDecodeError is a ValueError too
        raise ApiError(400, "invalid_json", Text("the request body is not valid JSON: {error}", error=str(error))) \
            from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def reject_unknown_query(request: web.Request, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise validation_error(Text("unknown query parameter(s) {names}; expected only: {allowed}",
                                    names=", ".join(map(repr, unknown)), allowed=", ".join(allowed)),
                               unknown[0], unknown=unknown)


def query_int(request: web.Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_error(Text("query parameter {name} must be an integer, got {value!r}", name=name,
                                    value=raw), name) from None
    if not minimum <= value <= maximum:
        raise validation_error(Text("query parameter {name} must be between {minimum} and {maximum}, got {value}",
                                    name=name, minimum=minimum, maximum=maximum, value=value), name)
    return value
