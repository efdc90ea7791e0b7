"""Cutting a long text before tokenising it, without changing the tokens a model sees.

A prediction job truncates every text to the task's max_length tokens, but the tokenizer still
normalises and splits the whole text first: for a 400-character complaint and max_length 256, a
third of the tokenising (the slowest part of a job after the forward passes) is thrown away. A
BERT WordPiece tokenizer works word by word, and its words never span a whitespace, a punctuation
mark or a CJK ideograph (each ideograph is a word of its own), so a text cut right after one of those
tokenises to a prefix of the whole text's tokens. When that prefix still fills max_length, the
truncated ids are exactly the whole text's; when it does not (a text of long Latin words, say), the
job tokenises the whole text instead."""

from __future__ import annotations

import string
import unicodedata
from typing import Any

# Characters past the token budget before looking for a cut: a budget's worth of Chinese characters
# is about as many tokens (digits and Latin letters group, so a few more are needed).
SLACK_CHARACTERS = 16
# How far past the first candidate position a boundary is looked for before giving up on cutting.
SEARCH_CHARACTERS = 64

# The CJK ranges BERT's normaliser isolates: the Rust `is_chinese_char` of tokenizers (whose fifth
# range starts at 0x2B920, where the Python BasicTokenizer's starts at 0x2B820).
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
              (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_bert_wordpiece(tokenizer: Any) -> bool:
    """A fast tokenizer whose normaliser (isolating CJK ideographs), pre-tokenizer and model are
    BERT's: what the cut assumes."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    parts = (type(backend.normalizer).__name__, type(backend.pre_tokenizer).__name__, type(backend.model).__name__)
    return (parts == ("BertNormalizer", "BertPreTokenizer", "WordPiece")
            and getattr(backend.normalizer, "handle_chinese_chars", False) is True)


# Whitespace BERT splits on (other control characters it deletes, so they join their neighbours),
# and what it counts as punctuation besides Unicode's P* categories.
SPLITTING_SPACES = frozenset(" \t\n\r\u3000")
ASCII_PUNCTUATION = frozenset(string.punctuation)


def _ends_a_word(character: str) -> bool:
    code = ord(character)
    return (character in SPLITTING_SPACES or character in ASCII_PUNCTUATION
            or unicodedata.category(character).startswith("P") or any(low <= code <= high for low, high in CJK_RANGES))


def cut_text(text: str, max_tokens: int) -> str | None:
    """`text` cut after the first word boundary at or past max_tokens + SLACK_CHARACTERS characters,
    None when it is not that long or no boundary is near (the whole text is tokenised then)."""
    start = max_tokens + SLACK_CHARACTERS
    for end in range(start, min(len(text), start + SEARCH_CHARACTERS)):
        if _ends_a_word(text[end - 1]):
            return text[:end]
    return None
