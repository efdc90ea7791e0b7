"""Why a task (or a prediction job) failed: what crosses from a worker to the server and on to the
API, with its message and hint kept as catalogue messages so that each reader gets them in their
own language. bertd.protocol imports it, so both sides keep importing the contract from there."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bertd.i18n import ENGLISH, Language, Text, translate


class TaskError(BaseModel):
    """Why a task failed, for people and programs: a stable snake_case `code`, the `message` (what
    went wrong, one short sentence) and the `hint` (what to do about it). A task's `error_message`
    is `text`, the two in one line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    message: str
    hint: str | None = None
    # The message and hint as catalogue ids with their parameters (bertd.i18n), so that the API can
    # answer in the request's language; None for errors recorded before them (shown as stored).
    message_text: Text | None = None
    hint_text: Text | None = None

    @classmethod
    def of(cls, code: str, message: Text | str, hint: Text | str | None = None) -> TaskError:
        """The error with its English `message` / `hint` and, for Texts, what renders them in other languages."""
        return cls(code=code, message=str(message), hint=None if hint is None else str(hint),
                   message_text=message if isinstance(message, Text) else None,
                   hint_text=hint if isinstance(hint, Text) else None)

    @property
    def text(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message

    def localized(self, language: Language = ENGLISH) -> dict[str, str | None]:
        """{code, message, hint} as the API shows them, in `language` where the catalogue has it."""
        # English is the stored text itself (a worker may have shortened it).
        english = language == ENGLISH
        message = self.message_text.render(language) if self.message_text and not english else self.message
        hint = self.hint_text.render(language) if self.hint_text and not english else self.hint
        return {"code": self.code, "message": message, "hint": hint}

    def text_in(self, language: Language = ENGLISH) -> str:
        """`text` (a task's error_message) in `language`."""
        if language == ENGLISH:
            return self.text
        shown = self.localized(language)
        if not shown["hint"]:
            return shown["message"] or ""
        return translate("{message}; {hint}", language).format(message=shown["message"], hint=shown["hint"])
