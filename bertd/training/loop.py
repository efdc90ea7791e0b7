"""The training loop: data, model, one loop over epochs, evaluation, saving the best epoch.

Runs inside a worker process. Reads top to bottom like nanoGPT's train.py: setup, batching,
model, then the loop. Progress goes out through `report`; `should_stop` is polled every step."""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

# Imported here, at module level, so that a spare worker has done it before a job arrives;
# BERT's modeling code is the common case, so it is loaded ahead too.
import transformers.models.bert.modeling_bert  # noqa: F401
from loguru import logger
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bertd.job import Report, ShouldStop, TrainingInputError, TrainingJob, TrainingStopped
from bertd.runtime.model_store import partial_dir
from bertd.training.base_model import resolve_base_model
from bertd.training.cpu_dropout import restore_attention, use_numpy_dropout
from bertd.training.data import Dataset, load_dataset
from bertd.training.lora import LORA_SMALL_LEARNING_RATE, merge_lora, parameter_counts, wrap_with_lora
from bertd.training.metrics import classification_report

PAD_TO_MULTIPLE = 8  # tensor cores and CPU kernels both prefer shapes in multiples of 8
BUCKET_WINDOW = 50  # batches sorted together by length; larger pads less but shuffles less
COMPILE_MIN_STEPS = 300


@dataclass(frozen=True)
class EncodedSplit:
    input_ids: list[list[int]]
    label_ids: np.ndarray


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def pick_autocast_dtype(precision: str, device: torch.device, report_warning: Report) -> torch.dtype | None:
    """The autocast dtype for the requested precision, or None for plain fp32."""
    if precision == "fp32":
        return None
    if device.type != "cuda":
        if precision == "fp16":
            report_warning({"type": "warning", "message": "precision fp16 needs a GPU; training in fp32 on the CPU"})
            return None
        return torch.bfloat16 if precision == "bf16" else None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        report_warning({"type": "warning", "message": "this GPU has no bf16; training in fp16 instead"})
        return torch.float16
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def encode(tokenizer: Any, texts: list[str], label_ids: np.ndarray, max_length: int) -> EncodedSplit:
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


def optimizer_for(model: torch.nn.Module, hyperparameters: dict[str, Any], device: torch.device) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        # Biases and LayerNorm weights are not decayed, as in BERT's original recipe.
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": hyperparameters["weight_decay"]},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=hyperparameters["learning_rate"], fused=True)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
    order = np.argsort([len(row) for row in split.input_ids], kind="stable")
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
        changing = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
        changing.update(name for name, _ in model.named_buffers())
        self.state = {name: tensor.detach().to("cpu", copy=True)
                      for name, tensor in model.state_dict().items() if name in changing}
        return True


def class_weights(label_ids: np.ndarray, num_labels: int, device: torch.device) -> torch.Tensor:
    """n / (k * count) per label, the usual 'balanced' weighting; a label with no rows weighs 0."""
    counts = np.bincount(label_ids, minlength=num_labels).astype(np.float64)
    weights = np.divide(len(label_ids), num_labels * counts, out=np.zeros_like(counts), where=counts > 0)
    return torch.tensor(weights, dtype=torch.float32, device=device)


def should_compile(setting: str, device: torch.device, total_steps: int) -> bool:
    # Compiling takes tens of seconds; it repays that only on a GPU and a job of some length.
    return setting == "on" or (setting == "auto" and device.type == "cuda" and total_steps >= COMPILE_MIN_STEPS)


def prepare_forward(model: torch.nn.Module, device: torch.device, compile_setting: str, total_steps: int,
                    seed: int) -> tuple[torch.nn.Module, bool, bool]:
    """The module the training steps call, whether it is compiled, and whether dropout masks come
    from NumPy. The compiled module only runs forward passes; `model` keeps the plain state_dict names."""
    compiled = should_compile(compile_setting, device, total_steps)
    # On the CPU, torch's dropout masks cost a fifth of each step; NumPy draws them faster. Not
    # when compiling: torch.compile cannot trace NumPy's generator and would split the graph at
    # every dropout (21 graphs instead of 1 for a 2-layer BERT).
    numpy_dropout = device.type == "cpu" and not compiled and use_numpy_dropout(model, seed)
    return (torch.compile(model, dynamic=True) if compiled else model), compiled, numpy_dropout


def metric_value(evaluation: dict[str, Any], metric: str) -> float:
    """The early-stopping metric, signed so that larger is always better."""
    if metric == "val_loss":
        return -evaluation["loss"]
    if metric == "val_accuracy":
        return evaluation["accuracy"]
    return evaluation["macro_f1"]


def save_model(
    model: torch.nn.Module,
    tokenizer: Any,
    best_state: dict[str, torch.Tensor],
    label_names: list[str],
    metrics: dict[str, Any],
    output_dir: Path,
) -> dict[str, str]:
    """Write the best epoch's model atomically: into a sibling folder, then rename."""
    partial = partial_dir(output_dir)
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
    return {
        "model_path": str(output_dir),
        "label_mapping_path": str(output_dir / "labels.json"),
        "metrics_path": str(output_dir / "metrics.json"),
    }


def load_model_and_tokenizer(job: TrainingJob, dataset: Dataset) -> tuple[torch.nn.Module, Any]:
    # The load report and progress bars are noise in a service log; our own lines say what matters.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    model_dir = resolve_base_model(job.base_model, Path(job.base_models_dir))
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    if not getattr(tokenizer, "is_fast", False):
        raise TrainingInputError(f"base model {job.base_model!r} has no fast tokenizer (tokenizer.json)")
    label_names = dataset.label_names
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir,
            # PyTorch's fused attention kernels (flash / memory-efficient on GPUs).
            attn_implementation="sdpa",
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={label: index for index, label in enumerate(label_names)},
            problem_type="single_label_classification",
            trust_remote_code=False,
            # A base model that already has a classification head with another label count is fine.
            ignore_mismatched_sizes=True,
        )
    except (OSError, ValueError) as error:
        raise TrainingInputError(f"base model {job.base_model!r} in {model_dir} cannot be loaded: {error}") from error
    return model, tokenizer


def run_training(job: TrainingJob, report: Report, should_stop: ShouldStop) -> dict[str, Any]:
    hp = job.hyperparameters
    output_dir = Path(job.output_dir)

    # ---- setup -------------------------------------------------------------------------------
    report({"type": "progress", "phase": "loading_data"})
    dataset = load_dataset(
        Path(job.training_data_path),
        Path(job.validation_data_path) if job.validation_data_path else None,
        hp,
    )
    for message in dataset.warnings:
        report({"type": "warning", "message": message})
    report({"type": "progress", "phase": "loading_model"})
    # Seed before the model is built so the new classification head starts the same every run.
    seed_everything(hp["random_seed"])
    model, tokenizer = load_model_and_tokenizer(job, dataset)
    if hp["lora"]["enabled"]:
        model = wrap_with_lora(model, hp["lora"])
        if hp["learning_rate"] < LORA_SMALL_LEARNING_RATE:
            report({"type": "warning", "message": f"learning_rate {hp['learning_rate']:g} is low for LoRA, whose "
                    f"adapters usually need 1e-4 to 1e-3; the model may barely change"})
    trainable_parameters, total_parameters = parameter_counts(model)
    device = torch.device(job.device) if job.device and torch.cuda.is_available() else pick_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if device.type == "cpu" and job.cpu_threads:
        torch.set_num_threads(job.cpu_threads)
    autocast_dtype = pick_autocast_dtype(hp["precision"], device, report)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model.to(device)

    max_length = hp["max_sequence_length"]
    model_limit = getattr(model.config, "max_position_embeddings", None)
    if model_limit is not None and max_length > model_limit:
        report({"type": "warning", "message": f"max_sequence_length {max_length} exceeds what base model "
                f"{job.base_model!r} supports; using {model_limit}"})
        max_length = model_limit
    train_split = encode(tokenizer, dataset.train_texts, dataset.train_label_ids, max_length)
    validation_split = encode(tokenizer, dataset.validation_texts, dataset.validation_label_ids, max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train_lengths = np.array([len(row) for row in train_split.input_ids])

    batch_size = hp["batch_size"]
    accumulation = hp["gradient_accumulation_steps"]
    epochs = hp["epochs"]
    batches_per_epoch = math.ceil(len(train_split.input_ids) / batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / accumulation)
    total_steps = steps_per_epoch * epochs
    optimizer = optimizer_for(model, hp, device)
    scheduler = linear_schedule(optimizer, int(total_steps * hp["warmup_ratio"]), total_steps)
    grad_scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
    batch_order = np.random.default_rng(hp["random_seed"])
    weights = (class_weights(train_split.label_ids, len(dataset.label_names), device)
               if hp["class_weighting"] == "balanced" else None)
    forward, compiled, numpy_dropout = prepare_forward(model, device, hp["compile"], total_steps, hp["random_seed"])
    evaluation_steps = hp["evaluation_steps"]
    logger.info(
        "task {} training on {} ({}{}{}{}): {} train / {} validation rows, {} labels, {} steps, {:,} of {:,} "
        "parameters trained",
        job.task_id, device, autocast_dtype or "fp32", ", compiled" if compiled else "",
        ", NumPy dropout" if numpy_dropout else "", ", LoRA" if hp["lora"]["enabled"] else "",
        len(train_split.input_ids), len(validation_split.input_ids), len(dataset.label_names), total_steps,
        trainable_parameters, total_parameters,
    )

    # ---- the loop ----------------------------------------------------------------------------
    history: list[dict[str, Any]] = []
    best = BestSoFar()
    best_watch = -math.inf
    epochs_without_improvement = 0
    step = 0
    samples_seen = 0
    training_seconds = 0.0
    last_report = 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        epoch_samples = 0
        batches = epoch_batches(train_lengths, batch_size, batch_order)
        for batch_index, indices in enumerate(batches):
            if should_stop():
                raise TrainingStopped()
            batch = make_batch(train_split, indices, pad_id, device)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                logits = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"], weight=weights)
            grad_scaler.scale(loss / accumulation).backward()
            # Running sums stay on the device: reading them every step would force a host sync.
            loss_sum += loss.detach() * len(indices)
            correct += (logits.detach().argmax(dim=-1) == batch["labels"]).sum()
            epoch_samples += len(indices)
            samples_seen += len(indices)
            last_of_epoch = batch_index == len(batches) - 1
            if (batch_index + 1) % accumulation == 0 or last_of_epoch:
                if hp["max_grad_norm"] > 0:
                    grad_scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), hp["max_grad_norm"])
                grad_scaler.step(optimizer)
                grad_scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                if evaluation_steps and step % evaluation_steps == 0 and not last_of_epoch:
                    paused = time.perf_counter()
                    evaluation = evaluate(model, validation_split, batch_size * 2, pad_id, device, autocast_dtype,
                                          dataset.label_names)
                    entry = {"epoch": epoch, "step": step, "val_loss": evaluation["loss"],
                             "val_accuracy": evaluation["accuracy"], "val_macro_f1": evaluation["macro_f1"]}
                    history.append(entry)
                    report({"type": "evaluation", **entry, "is_best": best.offer(entry, evaluation, model)})
                    model.train()
                    # Evaluation time is not training time: keep samples/s and the ETA honest.
                    epoch_start += time.perf_counter() - paused
            now = time.perf_counter()
            if now - last_report >= job.report_interval or last_of_epoch:
                last_report = now
                elapsed = training_seconds + (now - epoch_start)
                speed = samples_seen / elapsed if elapsed > 0 else None
                remaining_samples = (epochs - epoch) * len(train_split.input_ids) + (
                    len(train_split.input_ids) - epoch_samples
                )
                report({
                    "type": "progress",
                    "phase": "training",
                    "current_epoch": epoch,
                    "total_epochs": epochs,
                    "step": step,
                    "total_steps": total_steps,
                    "progress_percentage": round(100.0 * step / total_steps, 2),
                    "train_loss": float(loss_sum.item() / epoch_samples),
                    "train_accuracy": float(correct.item() / epoch_samples),
                    "learning_rate": scheduler.get_last_lr()[0],
                    "samples_per_second": round(speed, 2) if speed else None,
                    "eta_seconds": round(remaining_samples / speed, 1) if speed else None,
                })
        training_seconds += time.perf_counter() - epoch_start

        report({"type": "progress", "phase": "evaluating", "current_epoch": epoch})
        evaluation = evaluate(model, validation_split, batch_size * 2, pad_id, device, autocast_dtype,
                              dataset.label_names)
        entry = {
            "epoch": epoch,
            "step": step,
            "train_loss": float(loss_sum.item() / max(1, epoch_samples)),
            "train_accuracy": float(correct.item() / max(1, epoch_samples)),
            "val_loss": evaluation["loss"],
            "val_accuracy": evaluation["accuracy"],
            "val_macro_f1": evaluation["macro_f1"],
        }
        history.append(entry)
        is_best = best.offer(entry, evaluation, model)
        report({
            "type": "epoch",
            **entry,
            "total_epochs": epochs,
            "is_best": is_best,
            "per_class": evaluation["per_class"],
            "confusion_matrix": evaluation["confusion_matrix"],
            "samples_per_second": round(samples_seen / training_seconds, 2) if training_seconds else None,
        })

        if hp["early_stopping_enabled"]:
            watched = metric_value(evaluation, hp["early_stopping_metric"])
            if watched > best_watch + hp["early_stopping_min_delta"]:
                best_watch = watched
                epochs_without_improvement = 0
            else:
                epochs_without_improvement += 1
                if epochs_without_improvement >= hp["early_stopping_patience"] and epoch < epochs:
                    report({"type": "warning", "message": f"early stopping after epoch {epoch}: "
                            f"{hp['early_stopping_metric']} did not improve for {epochs_without_improvement} epoch(s)"})
                    break

    # ---- saving ------------------------------------------------------------------------------
    if should_stop():
        raise TrainingStopped()
    assert best.entry is not None and best.state is not None
    report({"type": "progress", "phase": "saving"})
    metrics = {
        "best_epoch": best.entry["epoch"],
        "best_step": best.entry["step"],
        "val_accuracy": best.entry["val_accuracy"],
        "val_macro_f1": best.entry["val_macro_f1"],
        "val_loss": best.entry["val_loss"],
        "per_class": best.entry["per_class"],
        "confusion_matrix": best.entry["confusion_matrix"],
        "labels": dataset.label_names,
        "history": history,
        "train_rows": len(train_split.input_ids),
        "validation_rows": len(validation_split.input_ids),
        "samples_per_second": round(samples_seen / training_seconds, 2) if training_seconds else None,
        "training_seconds": round(training_seconds, 3),
        "device": str(device),
        "precision": str(autocast_dtype).removeprefix("torch.") if autocast_dtype else "fp32",
        "compiled": compiled,
        "class_weights": weights.tolist() if weights is not None else None,
        "lora": hp["lora"]["enabled"],
        "trainable_parameters": trainable_parameters,
        "total_parameters": total_parameters,
    }
    artifacts = save_model(model, tokenizer, best.state, dataset.label_names, metrics, output_dir)
    return {"metrics": metrics, "artifacts": artifacts}
