"""HTTP handlers for base models: list, pull (in the background), delete."""

from __future__ import annotations

import asyncio

from aiohttp import web
from loguru import logger

from bertd.api.request_parsing import read_json
from bertd.i18n import Text
from bertd.runtime.base_models.catalog import (
    cached_snapshot,
    find,
    folder_of,
    is_model_name,
    ready_models,
    remove_folder,
)
from bertd.runtime.base_models.files import CONFIG_FILE
from bertd.runtime.base_models.hubs import describe_hub, resolve_endpoint
from bertd.runtime.base_models.manager import AlreadyDownloading
from bertd.schema.requests import BaseModelRequest
from bertd.schema.validation import parse
from bertd.server.errors import conflict, not_found
from bertd.server.keys import BASE_MODEL_DOWNLOADS, CONFIG, STORE
from bertd.server.language import request_language
from bertd.server.responses import json_response


async def list_base_models(request: web.Request) -> web.Response:
    config, downloads = request.app[CONFIG], request.app[BASE_MODEL_DOWNLOADS]
    ready = await asyncio.to_thread(ready_models, config.effective_base_models_dir)
    present = {entry.name for entry in ready}
    # A failure listed beside a model that is here after all (copied in by hand) would only confuse.
    entries = ready + [entry for entry in downloads.entries() if entry.name not in present]
    entries.sort(key=lambda entry: entry.name)
    return json_response({"base_models": [entry.to_json(request_language(request)) for entry in entries]})


async def pull_base_model(request: web.Request) -> web.Response:
    config, downloads = request.app[CONFIG], request.app[BASE_MODEL_DOWNLOADS]
    body = parse(BaseModelRequest, await read_json(request))
    source = body.source or config.base_model_source
    present = await asyncio.to_thread(find, config.effective_base_models_dir, body.name)
    if present is not None:
        return json_response({**present.to_json(), "message": f"base model {body.name!r} is already on this server; "
                                                               "nothing to download"}, status=200)
    try:
        record = await downloads.pull(body.name, source, body.revision)
    except AlreadyDownloading as running:
        done, total = running.record.bytes_done, running.record.bytes_total
        raise conflict(Text("base model {name!r} is already being downloaded ({done} of {total} bytes); follow it "
                            "in GET /api/v1/base-models or on the WebSocket /api/v1/ws", name=body.name, done=done,
                            total=total or "?"),
                       name=body.name, status="downloading") from None
    hub = describe_hub(source, resolve_endpoint(source))
    target = folder_of(config.effective_base_models_dir, body.name)
    return json_response({**downloads.entry(record).to_json(),
                          "message": f"downloading {body.name!r} from {hub} into {target}"}, status=202)


async def delete_base_model(request: web.Request) -> web.Response:
    config, store, downloads = request.app[CONFIG], request.app[STORE], request.app[BASE_MODEL_DOWNLOADS]
    name = request.match_info["name"]
    if not is_model_name(name):
        raise not_found(no_such_base_model(name))
    users = await store.active_tasks_using(name)
    if users:
        raise conflict(Text("base model {name!r} is used by {count} queued or training task(s); stop or delete "
                            "them first", name=name, count=len(users)), task_ids=users)
    if await downloads.discard(name):
        return json_response({"name": name, "deleted": True,
                              "message": f"the download of {name!r} was stopped and its files removed"})
    folder = folder_of(config.effective_base_models_dir, name)
    if (folder / CONFIG_FILE).is_file():
        await asyncio.to_thread(remove_folder, folder)
        downloads.announce({"name": name, "status": "deleted"})
        logger.info("base model {} deleted ({})", name, folder)
        return json_response({"name": name, "deleted": True, "message": f"base model {name!r} deleted from {folder}"})
    snapshot = await asyncio.to_thread(cached_snapshot, name)
    if snapshot is not None:
        raise conflict(Text("base model {name!r} is in the Hugging Face cache ({snapshot}), which bertd does not "
                            "manage; remove it with `hf cache delete`", name=name, snapshot=str(snapshot)),
                       location="hf_cache")
    raise not_found(no_such_base_model(name))


def no_such_base_model(name: str) -> Text:
    return Text("no base model named {name!r}; GET /api/v1/base-models lists them", name=name)
