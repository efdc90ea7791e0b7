"""HTTP handlers for the service itself: health, the OpenAPI document and the interactive docs."""

from __future__ import annotations

from aiohttp import web

from bertd import __version__
from bertd.i18n import ENGLISH, SIMPLIFIED_CHINESE, translate
from bertd.i18n.documents import translated_document
from bertd.server.keys import CONFIG, DEVICES, EXECUTOR, HUB, METRICS, OPENAPI, SCHEDULER, STORE
from bertd.server.language import docs_language
from bertd.server.prometheus import render
from bertd.server.responses import json_response

DOCS_HTML = """<!doctype html>
<html lang="{html_lang}">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="/api/v1/docs/assets/swagger-ui.css">
  <style>.bertd-languages {{ font: 14px sans-serif; padding: 8px 20px; text-align: right; }}</style>
</head>
<body>
  <nav class="bertd-languages"><a href="?lang=zh" lang="zh-CN">中文</a> · <a href="?lang=en" lang="en">English</a></nav>
  <div id="swagger-ui"></div>
  <script src="/api/v1/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: "/api/v1/openapi.json?lang={lang}", dom_id: "#swagger-ui", deepLinking: true}});
  </script>
</body>
</html>
"""
# The `?lang=` value each language is asked for by, and the page's lang attribute.
LANG_QUERY = {ENGLISH: "en", SIMPLIFIED_CHINESE: "zh"}
HTML_LANG = {ENGLISH: "en", SIMPLIFIED_CHINESE: "zh-CN"}


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
    """The document, its summaries and descriptions in `?lang=` or the Accept-Language's language."""
    language = docs_language(request)
    response = json_response(translated_document(request.app[OPENAPI], language))
    response.headers["Content-Language"] = HTML_LANG[language]
    response.headers["Vary"] = "Accept-Language"
    return response


async def docs(request: web.Request) -> web.Response:
    """Swagger UI over the document in the reader's language (`?lang=zh|en`, else the browser's)."""
    language = docs_language(request)
    html = DOCS_HTML.format(html_lang=HTML_LANG[language], lang=LANG_QUERY[language],
                            title=translate("bertd API", language))
    response = web.Response(text=html, content_type="text/html")
    response.headers["Content-Language"] = HTML_LANG[language]
    response.headers["Vary"] = "Accept-Language"
    return response


async def metrics(request: web.Request) -> web.Response:
    counts = await request.app[STORE].count_by_status()
    directory = getattr(request.app[EXECUTOR], "directory", None)
    workers = [info for info in await directory.workers() if info.alive] if directory is not None else []
    return render(request.app[METRICS], counts, request.app[SCHEDULER].running_samples_per_second,
                  request.app[HUB].subscriber_count, workers)
