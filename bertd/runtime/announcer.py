"""Telling everyone about what is already persisted: one log line per transition, the hub's live
messages, the Prometheus metrics and the task's callback. Never writes to the database itself."""

from __future__ import annotations

from loguru import logger

from bertd.protocol import CheckpointReport, EpochReport, EvaluationReport, Progress
from bertd.runtime.callbacks import CallbackSender
from bertd.runtime.hub import Hub
from bertd.runtime.telemetry import ServiceMetrics, observe_task_end
from bertd.state.records import PREDICTION_TERMINAL, TERMINAL_STATUSES, PredictionRecord, TaskRecord


def log_transition(task_id: str, source: str, target: str, detail: str = "") -> None:
    """One line per transition, always the same grammar: task <id> <from> -> <to>[: detail]."""
    logger.info("task {} {} -> {}{}", task_id, source, target, f": {detail}" if detail else "")


class Announcer:
    def __init__(self, hub: Hub, callbacks: CallbackSender, metrics: ServiceMetrics) -> None:
        self._hub = hub
        self._callbacks = callbacks
        self._metrics = metrics

    def transition(self, source: str, task: TaskRecord, detail: str = "") -> None:
        """A persisted status change: the log, the hub (for an ended task its `end` message too),
        and for an ended task the metrics and the callback."""
        log_transition(task.task_id, source, task.status, detail)
        status_message = {"type": "status", "status": str(task.status)}
        if task.error_message:
            status_message["error_message"] = task.error_message
        if task.error is not None:
            status_message["error"] = task.error.localized()
        self._hub.publish(task.task_id, status_message)
        if task.status in TERMINAL_STATUSES:
            observe_task_end(self._metrics, task)
            self._hub.publish(task.task_id, {"type": "end", "task": task.to_json()})
            if task.callback_url:
                self._callbacks.send(task.task_id, task.callback_url,
                                     {"event": f"task.{task.status}", "task": task.to_json()})

    def live_status(self, task: TaskRecord) -> None:
        """The hub learns an active task's status (at start-up), without a transition to log."""
        self._hub.publish(task.task_id, {"type": "status", "status": str(task.status)})

    def progress(self, task_id: str, progress: Progress, sent_at: float | None = None) -> None:
        extra = {"sent_at": sent_at} if sent_at is not None else {}
        self._hub.publish(task_id, {"type": "progress", **progress.model_dump(mode="json"), **extra})

    def epoch(self, task: TaskRecord, report: EpochReport) -> None:
        data = report.model_dump(mode="json", exclude={"type", "origin", "sent_at", "total_epochs"})
        self._hub.publish(task.task_id, {"type": "epoch", **data, "total_epochs": report.total_epochs})
        if report.val_accuracy is None or report.val_macro_f1 is None:
            logger.info("task {} epoch {}/{}: train_loss {:.4f} (no validation rows)", task.task_id, report.epoch,
                        report.total_epochs, report.train_loss)
        else:
            logger.info("task {} epoch {}/{}: val_accuracy {:.4f}, val_macro_f1 {:.4f}", task.task_id, report.epoch,
                        report.total_epochs, report.val_accuracy, report.val_macro_f1)
        if task.callback_url:
            self._callbacks.send(task.task_id, task.callback_url,
                                 {"event": "task.epoch", "task_id": task.task_id, "epoch": report.epoch,
                                  "metrics": data})

    def evaluation(self, task_id: str, report: EvaluationReport) -> None:
        self._hub.publish(task_id, {"type": "evaluation", **report.model_dump(mode="json",
                                                                               exclude={"type", "origin", "sent_at"})})

    def warning(self, task_id: str, message: str) -> None:
        logger.warning("task {}: {}", task_id, message)
        self._hub.publish(task_id, {"type": "warning", "message": message})

    def checkpoint(self, task_id: str, report: CheckpointReport) -> None:
        self._metrics.checkpoints_written.inc()
        self._metrics.checkpoint_seconds.observe(report.seconds)
        logger.debug("task {} checkpoint of epoch {}, step {}: {:.1f} MB in {:.2f} s", task_id, report.epoch,
                     report.step, report.size_bytes / 2**20, report.seconds)

    def checkpoint_failed(self, task_id: str, message: str) -> None:
        self._metrics.checkpoint_failures.inc()
        self.warning(task_id, message)

    def started(self, task_id: str, worker: str) -> None:
        logger.info("task {} runs on worker {}", task_id, worker)
        self._hub.publish(task_id, {"type": "started", "worker": worker})

    def resumed(self, task_id: str, data: dict) -> None:
        logger.info("task {} continues from its checkpoint of epoch {}, step {}", task_id, data["epoch"], data["step"])
        self._hub.publish(task_id, {"type": "resumed", **data})

    # ---- prediction jobs: their own stream in the hub, keyed by prediction_id -------------------

    def prediction_transition(self, source: str, job: PredictionRecord, detail: str = "") -> None:
        """A persisted status change of a prediction job: the log, its `prediction_status` message,
        and when it has ended its `prediction_end` with the full record."""
        logger.info("prediction {} of task {} {} -> {}{}", job.prediction_id, job.task_id, source, job.status,
                    f": {detail}" if detail else "")
        ids = {"task_id": job.task_id, "prediction_id": job.prediction_id}
        status_message = {"type": "prediction_status", **ids, "status": str(job.status)}
        if job.error_message:
            status_message["error_message"] = job.error_message
        self._hub.publish(job.prediction_id, status_message)
        if job.status in PREDICTION_TERMINAL:
            self._hub.publish(job.prediction_id, {"type": "prediction_end", **ids, "prediction": job.to_json()})

    def prediction_progress(self, job: PredictionRecord) -> None:
        record = job.to_json()
        self._hub.publish(job.prediction_id, {"type": "prediction_progress", **{
            name: record[name] for name in PREDICTION_PROGRESS_FIELDS}})


PREDICTION_PROGRESS_FIELDS = ("task_id", "prediction_id", "phase", "progress", "rows_done", "rows_total",
                              "rows_per_second", "eta_seconds")
