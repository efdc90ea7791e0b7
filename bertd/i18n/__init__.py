"""Languages: messages kept as catalogue ids with parameters (Text) and rendered in the reader's
language, the catalogues (locale/), and choosing a language from a request or the environment.
Imports only the standard library and pydantic: the worker process and the CLI use it too."""

from bertd.i18n.languages import ENGLISH, LANGUAGES, SIMPLIFIED_CHINESE, Language, cli_language, negotiate
from bertd.i18n.text import N_, Text, render, translate

__all__ = ["ENGLISH", "LANGUAGES", "SIMPLIFIED_CHINESE", "Language", "N_", "Text", "cli_language", "negotiate",
           "render", "translate"]
