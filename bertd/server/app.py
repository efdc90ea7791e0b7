"""create_app(config): the aiohttp application. Each resource is opened in a cleanup context of
its own and closed in reverse order: the browser guard's policy, data folders, database, uploads
copied in by hand, callbacks, devices, base model downloads, scheduler (with the gate that holds
tasks waiting for a base model), and the predictor's background imports."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import swagger_ui_bundle
from aiohttp import web
from loguru import logger

from bertd.api.ws import close_all
from bertd.runtime.announcer import Announcer
from bertd.runtime.base_models.gate import BaseModelGate
from bertd.runtime.base_models.manager import BaseModelDownloads, DownloadSettings
from bertd.runtime.callbacks import CallbackPolicy, CallbackSender
from bertd.runtime.copied_uploads import register_copied_files
from bertd.runtime.devices import detect_devices
from bertd.runtime.executor import Executor
from bertd.runtime.gpus import GpuAssigner
from bertd.runtime.hub import Hub
from bertd.runtime.jobs import JobSettings
from bertd.runtime.local_pool import LocalPool, StopPolicy
from bertd.runtime.model_store import ModelStore
from bertd.runtime.prediction_files import PredictionFiles
from bertd.runtime.predictor import ModelCache
from bertd.runtime.resume_policy import ResumePolicy
from bertd.runtime.scheduler import Scheduler
from bertd.runtime.telemetry import create_metrics
from bertd.schema.openapi import build_openapi
from bertd.server.auth import auth_middleware, warn_if_exposed
from bertd.server.browser_guard import browser_guard, browser_policy
from bertd.server.config import Config
from bertd.server.errors import error_middleware
from bertd.server.keys import (
    BASE_MODEL_DOWNLOADS,
    BASE_MODEL_GATE,
    CALLBACKS,
    CONFIG,
    DEVICES,
    EXECUTOR,
    HUB,
    METRICS,
    MODEL_CACHE,
    MODEL_STORE,
    OPENAPI,
    SCHEDULER,
    STORE,
    TICKETS,
    UPLOAD_LOCK,
    WEBSOCKETS,
)
from bertd.server.routes import add_routes
from bertd.server.tickets import TicketBook
from bertd.state.db import open_database
from bertd.state.store import Store

# Request bodies other than uploads are small JSON; uploads stream and are bounded by MAX_UPLOAD_MB.
MAX_JSON_BODY_BYTES = 1 << 20


async def data_folders(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    logger.info("configuration: {}", config.masked())
    warn_if_exposed(config)
    for folder in (config.data_dir, config.uploads_dir, config.models_dir, config.predictions_dir,
                   config.effective_base_models_dir):
        folder.mkdir(parents=True, exist_ok=True)
    # Temporary upload files of a crashed server are never referenced; clear them.
    for leftover in config.uploads_dir.glob(".upload-*"):
        leftover.unlink(missing_ok=True)
    yield


async def database(app: web.Application) -> AsyncIterator[None]:
    store = Store(await open_database(app[CONFIG].database_path))
    app[STORE] = store
    yield
    await store.close()
    logger.info("bertd stopped")


async def copied_uploads(app: web.Application) -> AsyncIterator[None]:
    # Before the scheduler starts: a queued task may name a file an operator copied in.
    result = await register_copied_files(app[STORE], app[CONFIG].uploads_dir, app[UPLOAD_LOCK])
    if result.added:
        logger.info("uploads: registered {} file(s) found in {}", len(result.added), app[CONFIG].uploads_dir)
    yield


async def callbacks(app: web.Application) -> AsyncIterator[None]:
    config, store, metrics = app[CONFIG], app[STORE], app[METRICS]

    async def record(task_id: str, state: dict, event: dict) -> None:
        if not event["ok"]:
            metrics.callback_failures.inc()
        await store.set_callback_state(task_id, state)
        await store.add_event(task_id, "callback", event)

    sender = CallbackSender(CallbackPolicy(config.callback_timeout_seconds, config.callback_max_attempts,
                                           config.callback_backoff_seconds, config.callback_secret,
                                           config.callback_block_private), record=record)
    await sender.start()
    app[CALLBACKS] = sender
    yield
    await sender.close()


async def devices(app: web.Application) -> AsyncIterator[None]:
    found = await asyncio.to_thread(detect_devices)
    app[DEVICES] = found
    logger.info("compute devices: {}", ", ".join(d["name"] if d["type"] == "cuda" else f"cpu ({d['cores']} cores)"
                                                 for d in found))
    yield


def make_executor(app: web.Application) -> Executor:
    """The local pool, or with BROKER_URL the Celery executor (imported only then: `import bertd`
    never imports Celery)."""
    config = app[CONFIG]
    if config.broker_url:
        from bertd.cluster.executor import CeleryExecutor

        return CeleryExecutor(config.broker_url, app[STORE])
    return local_pool(config)


def local_pool(config: Config) -> LocalPool:
    return LocalPool(config.training_function, config.log_level, config.keep_spare_worker, config.worker_cpus,
                     StopPolicy(config.stop_grace_seconds, config.kill_wait_seconds), config.max_concurrent_tasks,
                     config.prediction_function)


def prediction_pool(app: web.Application) -> Executor | None:
    """With workers on other boxes, prediction jobs run in this node's own pool (MAX_CONCURRENT_TASKS
    of them at once), where the models, the uploads and the results are; without, they share the
    training pool's slots."""
    return local_pool(app[CONFIG]) if app[CONFIG].broker_url else None


async def base_model_downloads(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    downloads = BaseModelDownloads(app[STORE], app[HUB], config.effective_base_models_dir, DownloadSettings(
        config.base_model_download_retries, config.base_model_download_backoff_seconds))
    app[BASE_MODEL_DOWNLOADS] = downloads
    await downloads.start()
    yield
    # Downloads stop where they are; the next start resumes them.
    await downloads.close()


async def scheduler(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    # With workers on other boxes, each box shares out its own GPUs.
    gpus = [] if config.broker_url else list(config.gpu_devices or (d["index"] for d in app[DEVICES]
                                                                    if d["type"] == "cuda"))
    executor = make_executor(app)
    app[EXECUTOR] = executor
    cores = len(config.worker_cpus or range(os.cpu_count() or 1))
    jobs = JobSettings(config.uploads_dir, config.effective_base_models_dir, config.models_dir,
                       config.checkpoints_dir, config.progress_report_interval,
                       max(1, cores // config.max_concurrent_tasks))
    announcer = Announcer(app[HUB], app[CALLBACKS], app[METRICS])
    gate = BaseModelGate(app[STORE], announcer, app[BASE_MODEL_DOWNLOADS], config.effective_base_models_dir,
                         auto_download=config.auto_download_base_models, source=config.base_model_source,
                         write_interval=config.progress_write_interval)
    running = Scheduler(app[STORE], executor, announcer, app[MODEL_STORE],
                        max_queued=config.max_queued_tasks, jobs=jobs,
                        gpus=GpuAssigner(gpus), progress_write_interval=config.progress_write_interval,
                        resume=ResumePolicy(config.resume_interrupted_tasks, config.max_resumes,
                                            config.keep_checkpoints),
                        prediction_files=PredictionFiles(config.predictions_dir), next_task=gate.next_task,
                        prediction_executor=prediction_pool(app))
    app[SCHEDULER] = running
    app[BASE_MODEL_GATE] = gate
    await running.start()
    await gate.start(running.wake)
    yield
    await running.close()
    await gate.close()


async def predictor(app: web.Application) -> AsyncIterator[None]:
    # The imports happen while nobody waits for them; a prediction that comes first waits for them.
    warming = asyncio.create_task(app[MODEL_CACHE].warm_up(), name="predictor-imports")
    yield
    await asyncio.gather(warming, return_exceptions=True)


def create_app(config: Config) -> web.Application:
    # The browser guard comes first: a refused Host or origin gets no further (not even a 401), and
    # it sees every answer, errors included, to add the CORS headers of an allowed origin.
    app = web.Application(middlewares=[browser_guard, error_middleware, auth_middleware],
                          client_max_size=MAX_JSON_BODY_BYTES)
    app[CONFIG] = config
    app[UPLOAD_LOCK] = asyncio.Lock()
    app[WEBSOCKETS] = set()
    app[METRICS] = create_metrics()
    app[HUB] = Hub()
    app[MODEL_STORE] = ModelStore(config.models_dir, config.checkpoints_dir)
    app[MODEL_CACHE] = ModelCache(config.predict_cache_size)
    app[OPENAPI] = build_openapi()
    app[TICKETS] = TicketBook()
    app.cleanup_ctx.extend([browser_policy, data_folders, database, copied_uploads, callbacks, devices,
                            base_model_downloads, scheduler, predictor])
    app.on_shutdown.append(close_all)
    add_routes(app, swagger_ui_bundle.swagger_ui_path)
    return app
