"""Dropout for training on the CPU, with masks drawn from NumPy's PCG64 generator.

On the CPU, torch draws dropout masks with `bernoulli_` from one MT19937 stream on one thread: for
a small BERT that is a fifth of every training step (measured; see BENCHMARKS.md). NumPy's
generator fills the same masks about three times faster. The keep probability (to 1/65536) and
the 1/(1-p) scaling are the same; only the random stream differs, and it is seeded from the task's
seed. GPUs keep torch's own dropout, which is fast there.

Attention-probability dropout happens inside the attention function, so a small attention function
is registered with transformers: without dropout (evaluation, inference) it is plain SDPA; with
dropout it computes attention explicitly, as SDPA's own CPU fallback does, with a NumPy mask."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

try:  # versions of transformers without these keep torch's attention dropout (the modules still swap)
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
except ImportError:
    AttentionInterface = None

ATTENTION_NAME = "bertd_cpu_dropout"
DROPOUT_STREAM = 1  # spawn key of the dropout masks' child stream of the task's seed
_LEVELS = 1 << 16


def keep_mask(shape: torch.Size, p: float, generator: np.random.Generator) -> torch.Tensor:
    """True where an element survives dropout with probability p (resolution 1/65536)."""
    bits = generator.integers(-(_LEVELS // 2), _LEVELS // 2, size=tuple(shape), dtype=np.int16, endpoint=False)
    return torch.from_numpy(bits) >= int(round(p * _LEVELS)) - _LEVELS // 2


def numpy_dropout(x: torch.Tensor, p: float, generator: np.random.Generator) -> torch.Tensor:
    if p <= 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    return torch.where(keep_mask(x.shape, p, generator), x * (1.0 / (1.0 - p)), 0.0)


class NumpyDropout(torch.nn.Module):
    """Stands in for torch.nn.Dropout (same `p`, same training/eval behaviour)."""

    def __init__(self, p: float, generator: np.random.Generator) -> None:
        super().__init__()
        self.p = p
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return numpy_dropout(x, self.p, self.generator) if self.training else x

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    masker = getattr(module, "dropout", None)
    if dropout == 0.0 or not isinstance(masker, NumpyDropout):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    scores = torch.matmul(query, key.transpose(2, 3)) * (scaling if scaling is not None else query.size(-1) ** -0.5)
    if attention_mask is not None:
        # sdpa_mask gives booleans (True: attend); other mask builders give additive floats.
        scores = (scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
                  if attention_mask.dtype == torch.bool else scores + attention_mask)
    weights = numpy_dropout(torch.softmax(scores, dim=-1), dropout, masker.generator)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


if AttentionInterface is not None:
    AttentionInterface.register(ATTENTION_NAME, _attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)


def use_numpy_dropout(model: torch.nn.Module, seed: int) -> bool:
    """Swap every torch.nn.Dropout in `model` for NumpyDropout, and its attention for one that
    uses it. Returns whether the attention could be switched (models that do not dispatch through
    transformers' AttentionInterface keep torch's attention dropout)."""
    # A stream of its own: default_rng(seed) itself also orders the batches and splits the data.
    generator = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(DROPOUT_STREAM,)))
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(parent, name, NumpyDropout(child.p, generator).train(child.training))
    if AttentionInterface is None:
        return False
    try:
        model.set_attn_implementation(ATTENTION_NAME)
    except (ValueError, AttributeError):
        return False
    return model.config._attn_implementation == ATTENTION_NAME


def restore_attention(model: torch.nn.Module) -> None:
    """Back to SDPA before saving, so the saved model loads anywhere."""
    if getattr(model.config, "_attn_implementation", None) == ATTENTION_NAME:
        model.set_attn_implementation("sdpa")


def dropout_generator(model: torch.nn.Module) -> np.random.Generator | None:
    """The generator the model's NumpyDropout modules share (None when they were not swapped in):
    part of what a checkpoint must restore for a run to continue exactly."""
    return next((module.generator for module in model.modules() if isinstance(module, NumpyDropout)), None)
