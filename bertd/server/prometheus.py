"""GET /metrics: the service's Prometheus metrics (runtime/telemetry.py) in the text format."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bertd.runtime.telemetry import ServiceMetrics
from bertd.state.records import TaskStatus


def render(metrics: ServiceMetrics, counts: dict[str, int], running_speed: float, websocket_clients: int,
           workers: Sequence[Any] = ()) -> web.Response:
    for status in TaskStatus:
        metrics.tasks.labels(status=str(status)).set(counts.get(str(status), 0))
    metrics.queue_depth.set(counts.get("queued", 0))
    metrics.samples_per_second.set(running_speed)
    metrics.websocket_clients.set(websocket_clients)
    metrics.workers.set(len(workers))
    metrics.worker_slots.labels(state="total").set(sum(worker.slots for worker in workers))
    metrics.worker_slots.labels(state="busy").set(sum(worker.busy for worker in workers))
    response = web.Response(body=generate_latest(metrics.registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
