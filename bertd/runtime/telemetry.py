"""The service's Prometheus metrics (prometheus-client), one registry per app; the runtime updates
them, server/prometheus.py renders them for GET /metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bertd.state.records import TaskRecord


@dataclass(frozen=True)
class ServiceMetrics:
    registry: CollectorRegistry
    tasks: Gauge
    queue_depth: Gauge
    task_duration: Histogram
    samples_per_second: Gauge
    callback_failures: Counter
    websocket_clients: Gauge
    checkpoints_written: Counter
    checkpoint_failures: Counter
    checkpoint_seconds: Histogram
    workers: Gauge
    worker_slots: Gauge


def create_metrics() -> ServiceMetrics:
    registry = CollectorRegistry()
    return ServiceMetrics(
        registry=registry,
        tasks=Gauge("bertd_tasks", "Tasks by status", ["status"], registry=registry),
        queue_depth=Gauge("bertd_queue_depth", "Tasks waiting to start", registry=registry),
        task_duration=Histogram("bertd_task_duration_seconds", "Wall time from start to end of a task",
                                ["status"], registry=registry,
                                buckets=(10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)),
        samples_per_second=Gauge("bertd_training_samples_per_second",
                                 "Training throughput, summed over running tasks", registry=registry),
        callback_failures=Counter("bertd_callback_failures", "Failed callback attempts", registry=registry),
        websocket_clients=Gauge("bertd_websocket_clients", "Open WebSocket subscriptions", registry=registry),
        checkpoints_written=Counter("bertd_checkpoints", "Checkpoints written", registry=registry),
        checkpoint_failures=Counter("bertd_checkpoint_failures", "Checkpoints that could not be written (e.g. a "
                                    "full disk); training went on without them", registry=registry),
        checkpoint_seconds=Histogram("bertd_checkpoint_write_seconds", "Time to write one checkpoint (in the "
                                     "background while training goes on)", registry=registry,
                                     buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120)),
        workers=Gauge("bertd_workers", "Worker boxes with a fresh heartbeat (BROKER_URL)", registry=registry),
        worker_slots=Gauge("bertd_worker_slots", "Training slots the live worker boxes offer", ["state"],
                           registry=registry),
    )


def observe_task_end(metrics: ServiceMetrics, task: TaskRecord) -> None:
    if task.started_at and task.finished_at:
        started = datetime.fromisoformat(task.started_at.replace("Z", "+00:00"))
        finished = datetime.fromisoformat(task.finished_at.replace("Z", "+00:00"))
        metrics.task_duration.labels(status=str(task.status)).observe((finished - started).total_seconds())
