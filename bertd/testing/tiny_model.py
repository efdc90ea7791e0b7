"""A tiny BERT with a character vocabulary, for tests, benchmarks and offline demos."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def character_vocabulary(texts: Iterable[str]) -> dict[str, int]:
    """Special tokens, then every character seen, in a stable order. Whitespace and control
    characters are skipped: some split lines in vocab.txt and would shift every later id."""
    characters = sorted({
        char for text in texts for char in text
        if not char.isspace() and unicodedata.category(char)[0] not in ("C", "Z")
    })
    # Lowercase ASCII only: the tokenizer lowercases before lookup.
    characters = [char for char in characters if char == char.lower()]
    return {token: index for index, token in enumerate([*SPECIAL_TOKENS, *characters])}


def build_tiny_bert(
    directory: Path,
    texts: Iterable[str],
    *,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 2,
    max_positions: int = 512,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised BertModel and its fast tokenizer to `directory`."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocabulary = character_vocabulary(texts)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast(vocab=vocabulary, do_lower_case=True, tokenize_chinese_chars=True)
    tokenizer.model_max_length = max_positions
    tokenizer.save_pretrained(directory)
    config = BertConfig(
        # Sized by the largest id, so no token can index past the embedding table.
        vocab_size=max(vocabulary.values()) + 1,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 4,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(directory, safe_serialization=True)
    return directory
