"""Writing the finished model: the best evaluation's weights in Hugging Face format, the label
mapping and the metrics, atomically (a .partial sibling, renamed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from bertd.protocol import Artifacts, partial_path
from bertd.training.cpu_dropout import restore_attention
from bertd.training.lora import merge_lora


def save_model(
    model: torch.nn.Module,
    tokenizer: Any,
    best_state: dict[str, torch.Tensor],
    label_names: list[str],
    metrics: dict[str, Any],
    output_dir: Path,
) -> Artifacts:
    partial = partial_path(output_dir)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    unexpected = model.load_state_dict(best_state, strict=False).unexpected_keys
    assert not unexpected, f"best-epoch weights that the model lacks: {unexpected}"
    plain = merge_lora(model)
    restore_attention(plain)
    plain.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    labels = {
        "labels": label_names,
        "id2label": {str(index): label for index, label in enumerate(label_names)},
        "label2id": {label: index for index, label in enumerate(label_names)},
    }
    (partial / "labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=2), encoding="utf-8")
    (partial / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
    shutil.rmtree(output_dir, ignore_errors=True)
    partial.rename(output_dir)
    return Artifacts(model_path=str(output_dir), label_mapping_path=str(output_dir / "labels.json"),
                     metrics_path=str(output_dir / "metrics.json"))
