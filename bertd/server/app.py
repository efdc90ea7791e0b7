"""create_app(config): the aiohttp application, its resources opened and closed in cleanup contexts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import swagger_ui_bundle
from aiohttp import web
from loguru import logger

from bertd.api.ws import close_all
from bertd.runtime.callbacks import CallbackPolicy, CallbackSender
from bertd.runtime.devices import detect_devices
from bertd.runtime.hub import Hub
from bertd.runtime.predictor import ModelCache
from bertd.runtime.scheduler import Scheduler
from bertd.schema.openapi import build_openapi
from bertd.server.auth import auth_middleware, warn_if_exposed
from bertd.server.config import Config
from bertd.server.errors import error_middleware
from bertd.server.keys import (
    CALLBACKS,
    CONFIG,
    DEVICES,
    HUB,
    METRICS,
    MODEL_CACHE,
    OPENAPI,
    SCHEDULER,
    STORE,
    UPLOAD_LOCK,
    WEBSOCKETS,
)
from bertd.server.prometheus import ServiceMetrics, create_metrics
from bertd.server.routes import add_routes
from bertd.state.db import open_database
from bertd.state.store import Store

# Request bodies other than uploads are small JSON; uploads stream and are bounded by MAX_UPLOAD_MB.
MAX_JSON_BODY_BYTES = 1 << 20


def prepare_data_dir(config: Config) -> None:
    for folder in (config.data_dir, config.uploads_dir, config.models_dir, config.effective_base_models_dir):
        folder.mkdir(parents=True, exist_ok=True)
    # Temporary upload files of a crashed server are never referenced; clear them.
    for leftover in config.uploads_dir.glob(".upload-*"):
        leftover.unlink(missing_ok=True)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    prepare_data_dir(config)
    logger.info("configuration: {}", config.masked())
    warn_if_exposed(config)
    devices = await asyncio.to_thread(detect_devices)
    app[DEVICES] = devices
    logger.info("compute devices: {}", ", ".join(d["name"] if d["type"] == "cuda" else f"cpu ({d['cores']} cores)"
                                                 for d in devices))
    connection = await open_database(config.database_path)
    store = Store(connection)
    callbacks = CallbackSender(
        CallbackPolicy(config.callback_timeout_seconds, config.callback_max_attempts,
                       config.callback_backoff_seconds, config.callback_secret, config.callback_block_private),
        record=lambda task_id, state, event: _record_callback(store, app[METRICS], task_id, state, event),
    )
    await callbacks.start()
    hub = Hub(config.ws_queue_limit)
    scheduler = Scheduler(config, store, callbacks, hub, app[METRICS])
    app[STORE], app[CALLBACKS], app[SCHEDULER], app[HUB] = store, callbacks, scheduler, hub
    scheduler.set_gpus([device["index"] for device in devices if device["type"] == "cuda"])
    await scheduler.start()
    try:
        yield
    finally:
        await scheduler.close()
        await callbacks.close()
        await store.close()
        logger.info("bertd stopped")


async def _record_callback(store: Store, metrics: ServiceMetrics, task_id: str, state: dict, event: dict) -> None:
    if not event["ok"]:
        metrics.callback_failures.inc()
    await store.set_callback_state(task_id, state)
    await store.add_event(task_id, "callback", event)


def create_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=MAX_JSON_BODY_BYTES)
    app[CONFIG] = config
    app[UPLOAD_LOCK] = asyncio.Lock()
    app[WEBSOCKETS] = set()
    app[METRICS] = create_metrics()
    app[MODEL_CACHE] = ModelCache(config.predict_cache_size)
    app[OPENAPI] = build_openapi()
    app.cleanup_ctx.append(_resources)
    app.on_shutdown.append(close_all)
    add_routes(app, swagger_ui_bundle.swagger_ui_path)
    return app
