"""Everything a run needs before its first step: data, model, device and precision, tokenised
splits, optimiser and learning-rate schedule. One function, `prepare`, in the order it happens."""

from __future__ import annotations

import math
import random
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

from bertd.i18n import Text
from bertd.protocol import (
    Hyperparameters,
    Phase,
    ProgressReport,
    Report,
    TrainingInputError,
    TrainingJob,
    WarningReport,
)
from bertd.training.base_model import resolve_base_model
from bertd.training.batching import EncodedSplit, encode
from bertd.training.cpu_dropout import use_numpy_dropout
from bertd.training.data import Dataset, load_dataset
from bertd.training.lora import LORA_SMALL_LEARNING_RATE, parameter_counts, wrap_with_lora

COMPILE_MIN_STEPS = 300


@dataclass
class Setup:
    """A run ready to train: read by the loop, never changed by it."""

    job: TrainingJob
    hp: Hyperparameters
    dataset: Dataset
    tokenizer: Any
    model: torch.nn.Module  # the module whose state_dict is saved
    forward: torch.nn.Module  # what the steps call: `model`, or its compiled form
    device: torch.device
    autocast_dtype: torch.dtype | None
    train_split: EncodedSplit
    validation_split: EncodedSplit
    pad_id: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    grad_scaler: torch.amp.GradScaler
    class_weights: torch.Tensor | None
    batch_order: np.random.Generator
    steps_per_epoch: int
    total_steps: int
    compiled: bool
    numpy_dropout: bool
    trainable_parameters: int
    total_parameters: int

    @property
    def label_names(self) -> list[str]:
        return self.dataset.label_names


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(job: TrainingJob) -> torch.device:
    if job.device and torch.cuda.is_available():
        return torch.device(job.device)
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def pick_autocast_dtype(precision: str, device: torch.device, report: Report) -> torch.dtype | None:
    """The autocast dtype for the requested precision, or None for plain fp32."""
    if precision == "fp32":
        return None
    if device.type != "cuda":
        if precision == "fp16":
            report(WarningReport.of(Text("precision fp16 needs a GPU; training in fp32 on the CPU")))
            return None
        return torch.bfloat16 if precision == "bf16" else None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        report(WarningReport.of(Text("this GPU has no bf16; training in fp16 instead")))
        return torch.float16
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def optimizer_for(model: torch.nn.Module, hp: Hyperparameters) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        # Biases and LayerNorm weights are not decayed, as in BERT's original recipe.
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": hp.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=hp.learning_rate, fused=True)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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


def load_model_and_tokenizer(job: TrainingJob, label_names: list[str]) -> tuple[torch.nn.Module, Any]:
    # The load report and progress bars are noise in a service log; our own lines say what matters.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    model_dir = resolve_base_model(job.base_model, Path(job.base_models_dir))
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    if not getattr(tokenizer, "is_fast", False):
        raise TrainingInputError(Text("base model {name!r} has no fast tokenizer (tokenizer.json)", name=job.base_model),
                                 code="base_model_unusable",
                                 hint=Text("use a base model whose folder has a tokenizer.json"))
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
        reason = " ".join((str(error).strip().splitlines() or [type(error).__name__])[0].split())
        raise TrainingInputError(Text("base model {name!r} in {folder} cannot be loaded: {reason}",
                                      name=job.base_model, folder=str(model_dir), reason=str(reason)),
                                 code="base_model_unusable",
                                 hint=Text("delete it (DELETE /api/v1/base-models/NAME) and pull it again, or replace "
                                           "the folder with a complete Hugging Face model")) from error
    return model, tokenizer


def prepare(job: TrainingJob, report: Report) -> Setup:
    hp = job.hyperparameters
    report(ProgressReport(phase=Phase.LOADING_DATA))
    dataset = load_dataset(Path(job.training_data_path),
                           Path(job.validation_data_path) if job.validation_data_path else None, hp)
    for warning in dataset.warnings:
        report(WarningReport.of(warning))

    report(ProgressReport(phase=Phase.LOADING_MODEL))
    # Seed before the model is built so the new classification head starts the same every run.
    seed_everything(hp.random_seed)
    model, tokenizer = load_model_and_tokenizer(job, dataset.label_names)
    if hp.lora.enabled:
        model = wrap_with_lora(model, hp.lora)
        if hp.learning_rate < LORA_SMALL_LEARNING_RATE:
            report(WarningReport.of(Text("learning_rate {rate} is low for LoRA, whose adapters usually need 1e-4 "
                                         "to 1e-3; the model may barely change", rate=f"{hp.learning_rate:g}")))
    trainable_parameters, total_parameters = parameter_counts(model)

    device = pick_device(job)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if device.type == "cpu" and job.cpu_threads:
        torch.set_num_threads(job.cpu_threads)
    autocast_dtype = pick_autocast_dtype(hp.precision, device, report)
    model.to(device)

    max_length = hp.max_sequence_length
    model_limit = getattr(model.config, "max_position_embeddings", None)
    if model_limit is not None and max_length > model_limit:
        report(WarningReport.of(Text("max_sequence_length {length} exceeds what base model {model!r} supports; "
                                     "using {limit}", length=max_length, model=job.base_model, limit=model_limit)))
        max_length = model_limit
    train_split = encode(tokenizer, dataset.train_texts, dataset.train_label_ids, max_length)
    validation_split = encode(tokenizer, dataset.validation_texts, dataset.validation_label_ids, max_length)

    batches_per_epoch = math.ceil(len(train_split) / hp.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / hp.gradient_accumulation_steps)
    total_steps = steps_per_epoch * hp.epochs
    optimizer = optimizer_for(model, hp)
    forward, compiled, numpy_dropout = prepare_forward(model, device, hp.compile, total_steps, hp.random_seed)
    setup = Setup(
        job=job, hp=hp, dataset=dataset, tokenizer=tokenizer, model=model, forward=forward, device=device,
        autocast_dtype=autocast_dtype, train_split=train_split, validation_split=validation_split,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        optimizer=optimizer,
        scheduler=linear_schedule(optimizer, int(total_steps * hp.warmup_ratio), total_steps),
        grad_scaler=torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16),
        class_weights=(class_weights(train_split.label_ids, len(dataset.label_names), device)
                       if hp.class_weighting == "balanced" else None),
        batch_order=np.random.default_rng(hp.random_seed),
        steps_per_epoch=steps_per_epoch, total_steps=total_steps, compiled=compiled, numpy_dropout=numpy_dropout,
        trainable_parameters=trainable_parameters, total_parameters=total_parameters,
    )
    logger.info(
        "task {} training on {}{} ({}{}{}{}): {} train / {} validation rows, {} labels, {} steps, {:,} of {:,} "
        "parameters trained",
        job.task_id, device, f" with {torch.get_num_threads()} thread(s)" if device.type == "cpu" else "",
        autocast_dtype or "fp32", ", compiled" if compiled else "",
        ", NumPy dropout" if numpy_dropout else "", ", LoRA" if hp.lora.enabled else "",
        len(train_split), len(validation_split), len(dataset.label_names), total_steps,
        trainable_parameters, total_parameters,
    )
    return setup
