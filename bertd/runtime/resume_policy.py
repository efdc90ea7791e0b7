"""What happens to a task a restart of the server interrupts (RESUME_INTERRUPTED_TASKS, MAX_RESUMES):
back to the queue, first in line, to continue from its last checkpoint (from the beginning if it
had none), until restarts have interrupted it too often."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bertd.i18n import Text
from bertd.protocol import Phase, TaskError
from bertd.state.records import TaskRecord, TaskStatus

# Tasks that continue after a restart go ahead of new ones (dispatch is by priority, then seq).
RESUMING_PRIORITY = 1


@dataclass(frozen=True)
class ResumePolicy:
    enabled: bool = True
    max_resumes: int = 3
    keep_checkpoints: bool = False

    def after_interruption(self, task: TaskRecord, cause: Text) -> tuple[TaskStatus, dict[str, Any]]:
        """The status and fields of a training task that `cause` interrupted (a shutdown, a crash),
        when interrupted tasks continue."""
        interruptions = task.interruptions + 1
        if interruptions > self.max_resumes:
            error = TaskError.of("interrupted", Text(
                "{cause} interrupted this task for the {count}th time, more than MAX_RESUMES ({limit}) allows; "
                "it is not continued again", cause=cause, count=interruptions, limit=self.max_resumes),
                Text("create it again to retry, or look for what keeps stopping the server"))
            return TaskStatus.FAILED, {"error_message": error.text, "error": error,
                                       "progress": task.current_progress.updated(phase=Phase.FAILED)}
        return TaskStatus.QUEUED, {
            "priority": RESUMING_PRIORITY,
            "interruptions": interruptions,
            "progress": task.current_progress.updated(phase=Phase.QUEUED, eta_seconds=None, samples_per_second=None),
        }

    def after_crash(self, task: TaskRecord) -> tuple[TaskStatus, dict[str, Any]]:
        """A task left training or stopping when the server died."""
        if not self.enabled:
            epoch = task.current_progress.current_epoch
            error = TaskError.of("interrupted", Text("bertd stopped while this task was training (during epoch "
                                                     "{epoch})", epoch=epoch), Text("create it again to retry"))
            return TaskStatus.FAILED, {"error_message": error.text, "error": error,
                                       "progress": task.current_progress.updated(phase=Phase.FAILED)}
        if task.status == TaskStatus.STOPPING:  # a stop was asked for: it is done now
            return TaskStatus.STOPPED, {"progress": task.current_progress.updated(phase=Phase.STOPPED)}
        return self.after_interruption(task, Text("a restart of the server (it had stopped unexpectedly)"))
