"""Rows to tensors: tokenise once, then seeded batches of rows of similar length, padded little."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

PAD_TO_MULTIPLE = 8  # tensor cores and CPU kernels both prefer shapes in multiples of 8
BUCKET_WINDOW = 50  # batches sorted together by length; larger pads less but shuffles less


@dataclass(frozen=True)
class EncodedSplit:
    input_ids: list[list[int]]
    label_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> np.ndarray:
        return np.array([len(row) for row in self.input_ids])


def encode(tokenizer: Any, texts: list[str], label_ids: np.ndarray, max_length: int) -> EncodedSplit:
    if not texts:  # no validation rows (train_val_split 0); the tokenizer refuses an empty batch
        return EncodedSplit([], label_ids)
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    return EncodedSplit(list(encoded["input_ids"]), label_ids)


def make_batch(split: EncodedSplit, indices: np.ndarray, pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Pad the rows to the longest in the batch (rounded up to a multiple of 8)."""
    rows = [split.input_ids[i] for i in indices]
    longest = max(len(row) for row in rows)
    width = int(math.ceil(longest / PAD_TO_MULTIPLE) * PAD_TO_MULTIPLE)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row_index, row in enumerate(rows):
        input_ids[row_index, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[row_index, : len(row)] = 1
    labels = torch.as_tensor(split.label_ids[indices], dtype=torch.long)
    non_blocking = device.type == "cuda"
    if non_blocking:
        input_ids, attention_mask, labels = input_ids.pin_memory(), attention_mask.pin_memory(), labels.pin_memory()
    return {
        "input_ids": input_ids.to(device, non_blocking=non_blocking),
        "attention_mask": attention_mask.to(device, non_blocking=non_blocking),
        "labels": labels.to(device, non_blocking=non_blocking),
    }


def epoch_batches(lengths: np.ndarray, batch_size: int, generator: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of rows of similar length: shuffle, sort each window of BUCKET_WINDOW
    batches by length, cut into batches, shuffle the batches. Padding shrinks to a few tokens
    per row while every epoch still sees a fresh, seeded order."""
    order = generator.permutation(len(lengths))
    window = batch_size * BUCKET_WINDOW
    batches = []
    for start in range(0, len(order), window):
        part = order[start : start + window]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in generator.permutation(len(batches))]
