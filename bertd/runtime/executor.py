"""The seam between the scheduler and whatever runs training and prediction jobs.

The scheduler starts a run only through `Executor.start(job)` (a TrainingJob or a PredictionJob),
and only while `capacity()` says a slot is free; from then on it reads the run's messages and, when
it must, asks the run to stop. How and where a run happens (a local worker process, a `bertd worker`
on another box) is the executor's business alone, and so is making sure a run asked to stop really
ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from bertd.protocol import PredictionJob, TrainingJob, WorkerMessage
from bertd.state.records import TaskRecord


class Run(Protocol):
    """One job being run somewhere."""

    @property
    def task_id(self) -> str:
        """The task the job belongs to (a prediction job's too: the task whose model it uses)."""
        ...

    def messages(self) -> AsyncIterator[WorkerMessage]:
        """Every message of the run in order; the last one is always `Exited`."""
        ...

    def stop(self) -> None:
        """Ask the run to stop at its next step. The executor ends it for certain: if it has not
        exited after the grace period it is terminated, then killed. Calling it again is harmless."""
        ...

    def pause(self) -> None:
        """Ask the run to write a checkpoint at its next step and then stop (ended for certain as by
        `stop`, should it not)."""
        ...


class Executor(Protocol):
    # Runs go on without the server (on other boxes): a shutdown leaves them running, and the next
    # start reads on (`reattach`) instead of counting them as interrupted.
    keeps_runs_on_shutdown: bool
    # Whether a run can checkpoint and end to continue later (checkpoints stay where they are written).
    supports_pause: bool
    # Called when capacity() changes (a box joins or leaves): the scheduler looks at its queue again.
    on_capacity_change: Callable[[], None]

    def capacity(self) -> int:
        """How many runs may go on at once now."""
        ...

    async def start(self, job: TrainingJob | PredictionJob) -> Run:
        """Begin running `job`; raises if it cannot even be started."""
        ...

    def reattach(self, task: TaskRecord) -> Run | None:
        """A run that went on while the server was down, or None."""
        ...

    def warm_up(self) -> None:
        """Prepare for the next job (e.g. a worker process with its imports done)."""
        ...

    async def close(self) -> None:
        """Release what the executor holds; called once no run is left."""
        ...
