"""The language a request is answered in: its Accept-Language (q-values respected), or for the
API docs a `?lang=` value first."""

from __future__ import annotations

from aiohttp import web

from bertd.i18n import Language, negotiate
from bertd.i18n.languages import query_language


def request_language(request: web.Request) -> Language:
    return negotiate(request.headers.get("Accept-Language"))


def docs_language(request: web.Request) -> Language:
    """`?lang=zh` / `?lang=en` when given (a link to share), else the browser's preference."""
    return query_language(request.query.get("lang")) or request_language(request)
