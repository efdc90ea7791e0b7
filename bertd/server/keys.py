"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bertd.runtime.base_models.gate import BaseModelGate
from bertd.runtime.base_models.manager import BaseModelDownloads
from bertd.runtime.callbacks import CallbackSender
from bertd.runtime.hub import Hub
from bertd.runtime.model_store import ModelStore
from bertd.runtime.predictor import ModelCache
from bertd.runtime.scheduler import Scheduler
from bertd.runtime.telemetry import ServiceMetrics
from bertd.server.config import Config
from bertd.server.origins import BrowserPolicy
from bertd.server.tickets import TicketBook
from bertd.state.store import Store

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
SCHEDULER = web.AppKey("scheduler", Scheduler)
CALLBACKS = web.AppKey("callbacks", CallbackSender)
HUB = web.AppKey("hub", Hub)
# Open WebSockets, closed with 1001 when the server shuts down.
WEBSOCKETS = web.AppKey("websockets", set)
DEVICES = web.AppKey("devices", list)
# Serialises the check-rename-insert step of uploads so two uploads of one name cannot race.
UPLOAD_LOCK = web.AppKey("upload_lock", asyncio.Lock)
OPENAPI = web.AppKey("openapi", dict)
METRICS = web.AppKey("metrics", ServiceMetrics)
MODEL_CACHE = web.AppKey("model_cache", ModelCache)
MODEL_STORE = web.AppKey("model_store", ModelStore)
# What runs training: the local pool, or the Celery executor (BROKER_URL).
EXECUTOR = web.AppKey("executor", object)
BASE_MODEL_DOWNLOADS = web.AppKey("base_model_downloads", BaseModelDownloads)
BASE_MODEL_GATE = web.AppKey("base_model_gate", BaseModelGate)

# Which hosts and origins the browser guard lets through (built at start-up).
BROWSER_POLICY = web.AppKey("browser_policy", BrowserPolicy)
# Single-use tickets for URLs that cannot carry the Authorization header.
TICKETS = web.AppKey("tickets", TicketBook)
