"""A BERT classifier's last encoder layer computed for the first token only, for inference.

The classification head reads nothing but the last layer's first token ([CLS], through the pooler).
In that layer every token's keys and values are still needed (the first token attends to all of
them), but the query, the attention's output projection and the feed-forward block are needed for
position 0 alone: about five sixths of the layer's work. On a 12-layer model that is ~8 % of a
forward pass, on the tiny two-layer ones ~40 %. The result is the same computation, so the scores
are those of the full model (to float rounding; `first_token_only` checks that on a probe batch and
keeps the full layer if not)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from loguru import logger
from transformers.models.bert.modeling_bert import BertForSequenceClassification, BertLayer

# Logits of the probe batch may differ from the full model's by float rounding, nothing more.
PROBE_TOLERANCE = 1e-4


class FirstTokenLayer(torch.nn.Module):
    """Wraps a BertLayer: the same weights, output only for position 0 (batch x 1 x hidden)."""

    def __init__(self, layer: BertLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *_: object,
                **__: object) -> torch.Tensor:
        attention = self.layer.attention.self
        rows, length, _hidden = hidden_states.shape
        first = hidden_states[:, :1]
        head_size = attention.attention_head_size
        query = attention.query(first).view(rows, 1, -1, head_size).transpose(1, 2)
        key = attention.key(hidden_states).view(rows, length, -1, head_size).transpose(1, 2)
        value = attention.value(hidden_states).view(rows, length, -1, head_size).transpose(1, 2)
        if attention_mask is not None and attention_mask.shape[-2] > 1:
            attention_mask = attention_mask[..., :1, :]  # the first query's row of a rows x keys mask
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                 scale=attention.scaling)
        context = context.transpose(1, 2).reshape(rows, 1, -1)
        attended = self.layer.attention.output(context, first)
        return self.layer.output(self.layer.intermediate(attended), attended)


def _eligible(model: torch.nn.Module) -> bool:
    if not isinstance(model, BertForSequenceClassification) or model.training:
        return False
    config, layers = model.config, model.bert.encoder.layer
    return (model.bert.pooler is not None and not config.is_decoder and not config.add_cross_attention
            and len(layers) > 0 and type(layers[-1]) is BertLayer and not config.chunk_size_feed_forward)


def _probe(model: torch.nn.Module, device: torch.device) -> torch.Tensor:
    ids = torch.arange(2, 26, device=device).remainder(model.config.vocab_size).view(2, 12)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # one padded row, so the mask's slicing is checked too
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=mask).logits.float()


def first_token_only(model: torch.nn.Module, device: torch.device) -> bool:
    """Swap the last encoder layer of an eval-mode BERT classifier for its first-token form, if its
    probe logits match the full layer's; leaves any other model as it is. Says whether it swapped."""
    if not _eligible(model):
        return False
    layers = model.bert.encoder.layer
    full = _probe(model, device)
    original = layers[-1]
    layers[-1] = FirstTokenLayer(original)
    difference = (_probe(model, device) - full).abs().max().item()
    if difference > PROBE_TOLERANCE:
        layers[-1] = original
        logger.warning("first-token last layer differs from the full one by {:.2e}; predicting with the full layer",
                       difference)
        return False
    return True
