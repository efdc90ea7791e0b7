"""Sharing the machine's GPUs out among running tasks: each gets the least-used one."""

from __future__ import annotations


def least_loaded_gpu(gpus: list[int], in_use: list[int]) -> int:
    """The GPU fewest running tasks use (so each task has its own while slots <= GPUs)."""
    return min(gpus, key=lambda gpu: (in_use.count(gpu), gpu))


class GpuAssigner:
    def __init__(self, gpus: list[int]) -> None:
        self._gpus = list(gpus)
        self._gpu_of: dict[str, int] = {}

    def assign(self, task_id: str) -> str | None:
        """A "cuda:N" device for the task, or None on a machine without GPUs."""
        if not self._gpus:
            return None
        chosen = least_loaded_gpu(self._gpus, list(self._gpu_of.values()))
        self._gpu_of[task_id] = chosen
        return f"cuda:{chosen}"

    def release(self, task_id: str) -> None:
        self._gpu_of.pop(task_id, None)
