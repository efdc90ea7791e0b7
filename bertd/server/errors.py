"""API errors and the one middleware that turns every failure into the JSON error body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from loguru import logger

from bertd.i18n import Text, render
from bertd.server.language import request_language
from bertd.server.responses import json_response


class ApiError(Exception):
    """An error answered as {"error": {"code", "message", "details"}} with an HTTP status. The
    message is a Text, rendered in the request's language when answered (a str is sent as is)."""

    def __init__(self, status: int, code: str, message: Text | str, details: Any = None) -> None:
        super().__init__(str(message))
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def validation_error(message: Text | str, field: str | None = None, **details: Any) -> ApiError:
    body = {"field": field, **details} if field is not None else (details or None)
    return ApiError(400, "validation_error", message, body)


def not_found(message: Text | str) -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: Text | str, **details: Any) -> ApiError:
    return ApiError(409, "conflict", message, details or None)


def error_response(request: web.Request, status: int, code: str, message: Text | str,
                   details: Any = None) -> web.Response:
    """The one error body, its message in the request's language (Accept-Language)."""
    text = render(message, request_language(request))
    return json_response({"error": {"code": code, "message": text, "details": details}}, status=status)


# aiohttp's own HTTP exceptions (unknown route, wrong method, ...) get the same body.
HTTP_EXCEPTION_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "service_unavailable",
    507: "insufficient_storage",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(request, error.status, error.code, error.message, error.details)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = HTTP_EXCEPTION_CODES.get(error.status, "http_error")
        message: Text | str = (error.text if error.text and not error.text.startswith(f"{error.status}:")
                               else error.reason)
        if error.status == 404:
            message = Text("no route for {method} {path}", method=request.method, path=request.path)
        elif error.status == 405:
            message = Text("method {method} is not allowed on {path}", method=request.method, path=request.path)
        response = error_response(request, error.status, code, message)
        if error.status == 405 and "Allow" in error.headers:
            response.headers["Allow"] = error.headers["Allow"]
        return response
    except Exception:
        logger.exception("unhandled error in {} {}", request.method, request.path)
        return error_response(request, 500, "internal_error",
                              Text("bertd hit an unexpected error; the server log has the details"))
