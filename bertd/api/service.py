"""HTTP handlers for the service itself: health, the OpenAPI document and the interactive docs."""

from __future__ import annotations

from aiohttp import web

from bertd import __version__
from bertd.server.keys import CONFIG, DEVICES, EXECUTOR, HUB, METRICS, OPENAPI, SCHEDULER, STORE
from bertd.server.prometheus import render
from bertd.server.responses import json_response

DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>bertd API</title>
  <link rel="stylesheet" href="/api/v1/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/v1/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""


async def health(request: web.Request) -> web.Response:
    counts = await request.app[STORE].count_by_status()
    return json_response({
        "status": "ok",
        "version": __version__,
        "devices": request.app[DEVICES],
        "max_concurrent_tasks": request.app[CONFIG].max_concurrent_tasks,
        "training": counts["training"] + counts["stopping"],
        "queued": counts["queued"],
        "paused": counts["paused"],
        "running_workers": request.app[SCHEDULER].running_count,
        "predicting": len(request.app[SCHEDULER].predictions.active),
    })


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


async def docs(_request: web.Request) -> web.Response:
    return web.Response(text=DOCS_HTML, content_type="text/html")


async def metrics(request: web.Request) -> web.Response:
    counts = await request.app[STORE].count_by_status()
    directory = getattr(request.app[EXECUTOR], "directory", None)
    workers = [info for info in await directory.workers() if info.alive] if directory is not None else []
    return render(request.app[METRICS], counts, request.app[SCHEDULER].running_samples_per_second,
                  request.app[HUB].subscriber_count, workers)
