"""GET /api/v1/workers: the worker boxes (BROKER_URL), from their heartbeats; none without a broker."""

from __future__ import annotations

from aiohttp import web

from bertd.server.keys import EXECUTOR
from bertd.server.responses import json_response


async def list_workers(request: web.Request) -> web.Response:
    directory = getattr(request.app[EXECUTOR], "directory", None)
    workers = await directory.workers() if directory is not None else []
    return json_response({"workers": [info.to_json() for info in workers]})
