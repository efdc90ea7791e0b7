"""JSON responses in readable UTF-8: Chinese labels and file names stay as they are, not \\uXXXX."""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web

dumps = functools.partial(json.dumps, ensure_ascii=False)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=dumps)
