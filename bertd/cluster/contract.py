"""What the API node and the workers agree on besides bertd/protocol.py: the protocol version, the
Redis keys, the timings, and the job envelope Celery carries (JSON only, never pickle)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bertd.protocol import TrainingJob

# Bumped whenever the envelope, the stream messages or the internal routes change: a worker refuses
# an API node of another version (and the other way round) instead of misreading it.
PROTOCOL_VERSION = 1

CELERY_TASK = "bertd.run_job"
CELERY_QUEUE = "bertd"

# A worker writes its heartbeat this often; the key expires after HEARTBEAT_TTL_SECONDS, and the API
# node declares a box dead once its heartbeat is older than DEAD_AFTER_SECONDS (under the 30 s a
# task may take to fail when its box is gone).
HEARTBEAT_SECONDS = 3.0
HEARTBEAT_TTL_SECONDS = 30
DEAD_AFTER_SECONDS = 15.0
# How long the stream of a run and a stop request are kept in Redis after their last write.
STREAM_TTL_SECONDS = 7 * 24 * 3600


def heartbeat_key(worker: str) -> str:
    return f"bertd:worker:{worker}"


def stream_key(task_id: str, run_id: str) -> str:
    """The run's messages, in order (a Redis stream: numbered, kept across restarts with AOF)."""
    return f"bertd:run:{task_id}:{run_id}"


def control_key(task_id: str, run_id: str) -> str:
    """What the API node asks of the run: "stop" (or nothing)."""
    return f"bertd:control:{task_id}:{run_id}"


class RemoteJob(BaseModel):
    """The Celery task's one argument, as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: int = PROTOCOL_VERSION
    task_id: str
    run_id: str
    job: TrainingJob  # with the API node's paths; the worker rewrites them to its own
    training_file: str
    training_sha256: str
    validation_file: str | None = None
    validation_sha256: str | None = None


def claim_key(task_id: str, run_id: str) -> str:
    """The one worker that runs this run (SET NX): a message Celery delivers twice starts it once."""
    return f"bertd:claim:{task_id}:{run_id}"
