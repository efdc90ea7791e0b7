"""LoRA fine-tuning through peft: low-rank adapters on chosen projections, the classification head
trained in full, every other base weight frozen. Before saving, the adapters are merged into the
weights they adapt, so the saved model is a plain one that `pipeline()` loads without peft."""

from __future__ import annotations

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model

from bertd.i18n import Text
from bertd.protocol import LoraSettings, TrainingInputError
from bertd.training.wording import listed

# Below this, LoRA adapters barely move in a few epochs; 1e-4..1e-3 is the usual range.
LORA_SMALL_LEARNING_RATE = 1e-4


def wrap_with_lora(model: torch.nn.Module, settings: LoraSettings) -> torch.nn.Module:
    config = LoraConfig(
        # SEQ_CLS also trains the classification head in full (peft's modules_to_save).
        task_type=TaskType.SEQ_CLS,
        r=settings.r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        # A string (such as "all-linear") is peft's own shorthand; a tuple names layers.
        target_modules=settings.target_modules if isinstance(settings.target_modules, str)
        else list(settings.target_modules),
    )
    try:
        return get_peft_model(model, config)
    except ValueError as error:
        linear_names = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                               if isinstance(module, torch.nn.Linear)})
        raise TrainingInputError(
            Text("hyperparameters.lora.target_modules {modules} do not match the base model's layers",
                 modules=str(settings.model_dump(mode="json")["target_modules"])), code="lora_target_modules",
            hint=Text("its linear layers are named: {names}; name some of them, or use \"all-linear\"",
                      names=listed(linear_names)),
        ) from error


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model with the adapters folded into its weights (`model` itself when not LoRA)."""
    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    total = sum(parameter.numel() for parameter in model.parameters())
    return trainable, total
