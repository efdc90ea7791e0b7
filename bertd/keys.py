"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bertd.callbacks import CallbackSender
from bertd.config import Config
from bertd.hub import Hub
from bertd.metrics_export import ServiceMetrics
from bertd.predict import ModelCache
from bertd.scheduler import Scheduler
from bertd.store import Store

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

