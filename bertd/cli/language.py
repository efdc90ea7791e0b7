"""The language of the `bertd` command's human output: Simplified Chinese under a Chinese locale
(LC_ALL, LC_MESSAGES, LANG: the first one set decides, as POSIX says), English otherwise. The
server is asked for the same language (Accept-Language), so the errors it sends read alike.
--json output is never translated."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from bertd.i18n import ENGLISH, SIMPLIFIED_CHINESE, Language, Text, cli_language


@cache
def language() -> Language:
    return cli_language(os.environ)


def tr(msgid: str, **params: Any) -> str:
    """`msgid` (a str.format template, the English text) in the terminal's language."""
    return Text(msgid, **params).render(language())


def accept_language() -> str:
    return "zh-CN, zh;q=0.9, en;q=0.5" if language() == SIMPLIFIED_CHINESE else "en"


# Status and phase names, as the server sends them (identifiers), in words.
WORDS = {
    "queued": Text("queued"), "training": Text("training"), "stopping": Text("stopping"), "paused": Text("paused"),
    "completed": Text("completed"), "failed": Text("failed"), "stopped": Text("stopped"),
    "downloading_base_model": Text("downloading base model"), "starting": Text("starting"),
    "loading_data": Text("loading data"), "loading_model": Text("loading model"), "evaluating": Text("evaluating"),
    "saving": Text("saving"), "pausing": Text("pausing"), "downloading": Text("downloading"), "ready": Text("ready"),
    "deleted": Text("deleted"),
    # A prediction job's status and phases.
    "running": Text("running"), "reading": Text("reading"), "predicting": Text("predicting"),
    "writing": Text("writing"),
}


def word(identifier: str | None) -> str:
    """A status or phase in the terminal's language; in English the identifier itself."""
    if identifier is None:
        return "?"
    if language() == ENGLISH or identifier not in WORDS:
        return identifier
    return WORDS[identifier].render(language())


def padded(text: str, width: int) -> str:
    """`text` left-aligned in `width` terminal columns (a Chinese character takes two)."""
    columns = sum(2 if ord(char) > 0x2E80 else 1 for char in text)
    return text + " " * max(0, width - columns)
