"""The seam between the scheduler and whatever runs training and prediction jobs.

The scheduler starts a run only through `Executor.start(job)` (a TrainingJob or a PredictionJob); from then on it reads the run's
messages and, when it must, asks the run to stop. How and where a run happens (a local worker
process, a `bertd worker` on another box) is the executor's business alone, and so is making sure
a run asked to stop really ends: after a grace period it is terminated, then killed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from bertd.protocol import PredictionJob, TrainingJob, WorkerMessage


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
    def start(self, job: TrainingJob | PredictionJob) -> Run:
        """Begin running `job`; raises if it cannot even be started."""
        ...

    def warm_up(self) -> None:
        """Prepare for the next job (e.g. a worker process with its imports done)."""
        ...

    async def close(self) -> None:
        """Release what the executor holds; called once no run is left."""
        ...
