"""An OpenAPI document in a reader's language: its summaries and descriptions (written in English
in the pydantic models and bertd/schema/openapi*.py, the msgids) looked up in the catalogue; every
other part (paths, field names, enums, examples) is left as it is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bertd.i18n.languages import ENGLISH, Language
from bertd.i18n.text import translate

# The keys of an OpenAPI document whose string values people read.
TRANSLATED_KEYS = ("summary", "description")


def document_texts(node: Any) -> Iterator[str]:
    """Every summary and description in an OpenAPI document, in document order."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in TRANSLATED_KEYS and isinstance(value, str):
                yield value
            else:
                yield from document_texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from document_texts(value)


def translated_document(node: Any, language: Language) -> Any:
    """A copy of `node` with its summaries and descriptions in `language` (itself for English)."""
    if language == ENGLISH:
        return node
    if isinstance(node, dict):
        return {key: translate(value, language) if key in TRANSLATED_KEYS and isinstance(value, str)
                else translated_document(value, language) for key, value in node.items()}
    if isinstance(node, list):
        return [translated_document(value, language) for value in node]
    return node
