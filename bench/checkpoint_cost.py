"""What a checkpoint costs per epoch: the tiny test model and the BERT-base shape (random weights),
on this machine's CPU (and its GPU when there is one).

A checkpoint is taken in two parts: the copy of every tensor to CPU memory, which training waits
for, and the write to disk, which a background thread does while training goes on. Both are
measured against the time of one epoch of the seed's file (1,000 rows, 800 trained, batch 16),
estimated from the measured time of a few training steps.

    python bench/checkpoint_cost.py [--shapes tiny,base] [--steps 3] [--seq 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from common import machine_description
from transformers import BertConfig, BertForSequenceClassification

from bertd.training import checkpoint

SHAPES = {
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256,
             "vocab_size": 1200},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
             "vocab_size": 21128},
}
ROWS_PER_EPOCH, BATCH = 800, 16


def measure(shape: str, steps: int, sequence: int, device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**SHAPES[shape], num_labels=6)).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batch = torch.randint(5, SHAPES[shape]["vocab_size"], (BATCH, sequence), device=device)
    labels = torch.randint(0, 6, (BATCH,), device=device)

    def step() -> None:
        loss = model(input_ids=batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()

    step()  # warm-up; creates the optimiser state a checkpoint carries
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    epoch_seconds = (time.perf_counter() - started) / steps * (ROWS_PER_EPOCH // BATCH)

    started = time.perf_counter()
    payload = checkpoint.cpu_copy({"weights": checkpoint.trained_weights(model), "optimizer": optimizer.state_dict(),
                                   "scheduler": scheduler.state_dict(),
                                   "random": checkpoint.random_states(model, np.random.default_rng(0))})
    copy_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bertd-checkpoint-") as folder:
        started = time.perf_counter()
        _, size = checkpoint.write(Path(folder), 1, payload, {"epoch": 1, "step": 1})
        write_seconds = time.perf_counter() - started
    return {"epoch_seconds": epoch_seconds, "copy_seconds": copy_seconds, "write_seconds": write_seconds,
            "size_mb": size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="tiny,base")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seq", type=int, default=128)
    arguments = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"{datetime.now(UTC):%Y-%m-%d}, {machine_description()}, {device}")
    print(f"`python bench/checkpoint_cost.py --shapes {arguments.shapes} --steps {arguments.steps} "
          f"--seq {arguments.seq}`\n")
    print("| model | checkpoint size | epoch (800 rows, est.) | copy (training waits) | write (background) | "
          "copy / epoch | write / epoch |")
    print("|---|---|---|---|---|---|---|")
    for shape in arguments.shapes.split(","):
        result = measure(shape, arguments.steps, arguments.seq, device)
        print(f"| {shape} | {result['size_mb']:.0f} MB | {result['epoch_seconds']:.1f} s | "
              f"{result['copy_seconds']:.2f} s | {result['write_seconds']:.2f} s | "
              f"{100 * result['copy_seconds'] / result['epoch_seconds']:.2f} % | "
              f"{100 * result['write_seconds'] / result['epoch_seconds']:.2f} % |", flush=True)


if __name__ == "__main__":
    main()
