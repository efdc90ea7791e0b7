"""The Celery application both sides build from BROKER_URL, and why each setting is what it is."""

from __future__ import annotations

from celery import Celery

from bertd.cluster.contract import CELERY_QUEUE, CELERY_TASK


def make_celery(broker_url: str, slots: int = 1) -> Celery:
    app = Celery("bertd", broker=broker_url)
    app.conf.update(
        # JSON only: a broker anyone on the network can write to must never feed pickle to a worker.
        task_serializer="json",
        accept_content=["json"],
        # Nothing reads task results: messages come back through Redis streams, the model over HTTP.
        task_ignore_result=True,
        task_default_queue=CELERY_QUEUE,
        task_routes={CELERY_TASK: {"queue": CELERY_QUEUE}},
        # Hour-long tasks must never run twice: the message is acknowledged when the task starts
        # (acks_late off), so a broker redelivery after a worker dies can never start it again; a
        # task whose box dies is failed by the API node instead (see the heartbeats).
        task_acks_late=False,
        task_reject_on_worker_lost=False,
        # ... and never wait behind a busy worker: no prefetching. With Redis a prefetch multiplier
        # of 1 still reserves one task per slot; worker_disable_prefetch (Celery 5.6+) reserves
        # none beyond the free slots, so a queued task goes to whichever box frees a slot first.
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=True,
        # One thread per slot: each runs its job in a spawned child process (torch never shares a
        # process with Celery), so threads are enough and keep the spare child per slot simple.
        worker_pool="threads",
        worker_concurrency=slots,
        # bertd's own heartbeats (Redis keys with a TTL) tell the API node who is alive; Celery's
        # gossip, mingle and events would only add broker traffic.
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        # A Redis restart mid-task: keep retrying instead of giving up.
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
    )
    return app
