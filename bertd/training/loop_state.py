"""What the training loop accumulates as it goes: all of it goes into a checkpoint."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from bertd.training.evaluation import BestSoFar


@dataclass
class LoopState:
    step: int = 0
    samples_seen: int = 0
    # Time spent training (evaluations excluded), over every process the run has lived in.
    training_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: BestSoFar = field(default_factory=BestSoFar)
    # Early stopping: the best value of the watched metric and the epochs since it improved.
    best_watch: float = -math.inf
    epochs_without_improvement: int = 0

    def speed(self, extra_seconds: float = 0.0) -> float | None:
        elapsed = self.training_seconds + extra_seconds
        return self.samples_seen / elapsed if elapsed > 0 else None


@dataclass
class EpochSums:
    """The running figures of the epoch in progress. The sums stay on the device: reading them
    every step would force a host sync."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    samples: int = 0
    # perf_counter() at which this epoch's training time started; moved on by evaluations (not
    # training time) and set back by a resume (time already spent in an earlier process).
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def zero(cls, device: torch.device) -> EpochSums:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long))

    def seconds(self) -> float:
        return time.perf_counter() - self.started
