"""A message kept as its catalogue id (the English text, a str.format template) and its
parameters, rendered in a reader's language only when it is shown: the server stores and sends
English, and renders Chinese for a request that asks for it.

`Text("no training task with task_id {task_id!r}", task_id=task_id)` is the lazy message;
`str(text)` is its English. Parameters may be Texts themselves (rendered in the same language).
Text is a pydantic model, so it crosses the worker's pipe, a broker and the database as JSON."""

from __future__ import annotations

import gettext
from functools import cache
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, ConfigDict

from bertd.i18n.languages import ENGLISH, Language

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DOMAIN = "bertd"

Parameter = Union["Text", str, int, float, bool, None]


class Text(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    msgid: str
    params: dict[str, Parameter] = {}

    def __init__(self, msgid: str | None = None, /, **params: Any) -> None:
        if msgid is None:  # model_validate / keyword construction: msgid=..., params=...
            super().__init__(**params)
        else:
            super().__init__(msgid=msgid, params=params)

    def render(self, language: Language = ENGLISH) -> str:
        template = translate(self.msgid, language)
        values = {name: render(value, language) if isinstance(value, Text) else value
                  for name, value in self.params.items()}
        return template.format(**values)

    def __str__(self) -> str:
        return self.render(ENGLISH)

    def replacing(self, old: str, new: str) -> Text:
        """The same message with `old` replaced by `new` in every string parameter (e.g. a temporary
        file name by the name the user knows)."""
        params = {name: value.replacing(old, new) if isinstance(value, Text)
                  else value.replace(old, new) if isinstance(value, str) else value
                  for name, value in self.params.items()}
        return Text(self.msgid, **params)


def N_(msgid: str) -> str:  # noqa: N802 - the conventional name of gettext's no-op marker
    """Marks a string for the catalogue where it is translated later (translate(msgid, language))."""
    return msgid


@cache
def _catalogue(language: Language) -> gettext.NullTranslations:
    if language == ENGLISH:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)


def translate(msgid: str, language: Language = ENGLISH) -> str:
    """The catalogue's text for `msgid` in `language` (the msgid itself when it has none)."""
    return _catalogue(language).gettext(msgid)


def render(value: Text | str | None, language: Language = ENGLISH) -> str | None:
    """A Text in `language`; a plain string (a message from before Texts, or from outside) as is."""
    return value.render(language) if isinstance(value, Text) else value
