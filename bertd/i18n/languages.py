"""Which language a reader gets: from an HTTP Accept-Language header (q-values respected), a
`?lang=` query value, or the POSIX locale variables of a terminal. Two languages are offered:
English (the msgids themselves) and Simplified Chinese (locale/zh_CN)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Language = Literal["en", "zh_CN"]
ENGLISH: Language = "en"
SIMPLIFIED_CHINESE: Language = "zh_CN"
LANGUAGES: tuple[Language, ...] = (ENGLISH, SIMPLIFIED_CHINESE)


def language_of_tag(tag: str) -> Language | None:
    """'zh', 'zh-CN', 'zh_TW.UTF-8', 'zh-Hans' -> zh_CN; 'en', 'en-US', 'C', 'POSIX' -> en; else None."""
    primary = tag.strip().replace("_", "-").split(".")[0].split("@")[0].split("-")[0].lower()
    if primary == "zh":
        return SIMPLIFIED_CHINESE
    if primary in ("en", "c", "posix", "*"):
        return ENGLISH
    return None


def negotiate(accept_language: str | None) -> Language:
    """The offered language the header prefers most: ranges by q (highest first, ties in the order
    given), the first that is Chinese or English (or `*`) wins; English when none is."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate((accept_language or "").split(",")):
        tag, _, parameters = item.partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag.strip() and quality > 0:
            ranked.append((-quality, index, tag))
    for _, _, tag in sorted(ranked):
        language = language_of_tag(tag)
        if language is not None:
            return language
    return ENGLISH


def query_language(value: str | None) -> Language | None:
    """A `?lang=` value ('zh', 'zh-CN', 'en'), or None when absent or not offered."""
    return language_of_tag(value) if value else None


def cli_language(environment: Mapping[str, str]) -> Language:
    """The language of a terminal's messages, chosen as POSIX does: the first of LC_ALL,
    LC_MESSAGES and LANG that is set and not empty decides; Chinese for zh_*, else English."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environment.get(name)
        if value:
            return language_of_tag(value) or ENGLISH
    return ENGLISH
