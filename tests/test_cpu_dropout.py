"""CPU dropout from NumPy: the same statistics as torch's, deterministic per seed, gone at eval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bertd.training.cpu_dropout import ATTENTION_NAME, NumpyDropout, numpy_dropout, restore_attention, use_numpy_dropout

from conftest import TINY_MODEL


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keep_rate_and_scaling_match_torch_dropout(p: float) -> None:
    x = torch.ones(1_000_000)
    dropped = numpy_dropout(x, p, np.random.default_rng(0))
    kept = dropped != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.003
    assert torch.allclose(dropped[kept], torch.full_like(dropped[kept], 1 / (1 - p)))
    assert torch.equal(numpy_dropout(x, 0.0, np.random.default_rng(0)), x)
    assert not numpy_dropout(x, 1.0, np.random.default_rng(0)).any()


def test_gradients_pass_only_through_kept_elements() -> None:
    x = torch.randn(64, 32, requires_grad=True)
    numpy_dropout(x, 0.3, np.random.default_rng(1)).sum().backward()
    kept = numpy_dropout(torch.ones(64, 32), 0.3, np.random.default_rng(1)) != 0
    assert torch.allclose(x.grad, kept.float() / 0.7)


def tiny_classifier(base_models_dir: Path) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    directory = base_models_dir / TINY_MODEL
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=3, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    inputs = tokenizer(["工厂烟囱排放废气", "工地扬尘", "饭店油烟很大影响居民"], padding=True, return_tensors="pt")
    return model, dict(inputs)


def test_a_switched_model_predicts_the_same_and_trains_deterministically(base_models_dir: Path, tmp_path: Path) -> None:
    model, inputs = tiny_classifier(base_models_dir)
    model.eval()
    with torch.inference_mode():
        before = model(**inputs).logits

    assert use_numpy_dropout(model, seed=7)
    assert model.config._attn_implementation == ATTENTION_NAME
    assert not any(type(module) is torch.nn.Dropout for module in model.modules())
    assert any(isinstance(module, NumpyDropout) for module in model.modules())
    with torch.inference_mode():
        assert torch.allclose(model(**inputs).logits, before, atol=1e-5), "evaluation must not change"

    def training_logits(seed: int) -> torch.Tensor:
        trained, _ = tiny_classifier(base_models_dir)
        use_numpy_dropout(trained, seed)
        trained.train()
        return trained(**inputs).logits

    first, again, other = training_logits(7), training_logits(7), training_logits(8)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    assert not torch.allclose(first, before)  # dropout is active while training
    first.sum().backward()

    restore_attention(model)
    model.save_pretrained(tmp_path / "saved")
    assert ATTENTION_NAME not in (tmp_path / "saved" / "config.json").read_text()
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    with torch.inference_mode():
        assert torch.allclose(reloaded(**inputs).logits, before, atol=1e-5)
