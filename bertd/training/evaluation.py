"""Evaluating on the validation rows, and keeping the best evaluation's weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bertd.training.batching import EncodedSplit, make_batch
from bertd.training.metrics import classification_report


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    label_names: list[str],
) -> dict[str, Any]:
    model.eval()
    loss_sum = torch.zeros((), device=device)
    predictions = []
    # Sorting by length keeps padding small; the order does not change any metric.
    order = np.argsort(split.lengths(), kind="stable")
    for start in range(0, len(order), batch_size):
        batch = make_batch(split, order[start : start + batch_size], pad_id, device)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss_sum += torch.nn.functional.cross_entropy(logits.float(), batch["labels"], reduction="sum")
        predictions.append(logits.argmax(dim=-1))
    predicted = np.empty(len(order), dtype=np.int64)
    predicted[order] = torch.cat(predictions).cpu().numpy()
    report = classification_report(split.label_ids, predicted, label_names)
    report["loss"] = float(loss_sum.item() / max(1, len(order)))
    return report


@dataclass
class BestSoFar:
    """The best evaluation by validation macro-F1 and a CPU copy of the weights that training
    changes (frozen ones are left out: with LoRA that is nearly all of them). Far cheaper than a
    checkpoint written per improvement, and what gets saved at the end."""

    entry: dict[str, Any] | None = None
    state: dict[str, torch.Tensor] | None = None

    def offer(self, entry: dict[str, Any], evaluation: dict[str, Any], model: torch.nn.Module) -> bool:
        # Ties in macro-F1 are common on small validation sets (1.0 from an early epoch on); the
        # lower validation loss then picks the more confident model rather than the first one.
        if self.entry is not None and (evaluation["macro_f1"], -evaluation["loss"]) <= (
                self.entry["val_macro_f1"], -self.entry["val_loss"]):
            return False
        self.entry = {**entry, "per_class": evaluation["per_class"], "confusion_matrix": evaluation["confusion_matrix"]}
        self.state = _changing_weights(model)
        return True

    def keep_last(self, entry: dict[str, Any], model: torch.nn.Module) -> None:
        """Without validation rows nothing can be compared: the model as training left it is kept."""
        self.entry = {**entry, "per_class": {}, "confusion_matrix": []}
        self.state = _changing_weights(model)


def _changing_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    changing = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    changing.update(name for name, _ in model.named_buffers())
    return {name: tensor.detach().to("cpu", copy=True)
            for name, tensor in model.state_dict().items() if name in changing}


def metric_value(evaluation: dict[str, Any], metric: str) -> float:
    """The early-stopping metric, signed so that larger is always better."""
    if metric == "val_loss":
        return -evaluation["loss"]
    if metric == "val_accuracy":
        return evaluation["accuracy"]
    return evaluation["macro_f1"]
