"""Babel extraction methods (named in babel.cfg / babel-dashboard.cfg as
`bertd.i18n.extractors.NAME`) for the two sources Babel has no reader for:

- the OpenAPI document: its summaries and descriptions, as `build_openapi()` makes them from the
  pydantic models and bertd/schema/openapi*.py, so the English there is the one source and the
  Chinese comes from the catalogue;
- the dashboard's HTML: the inner HTML of elements marked `data-i18n`, and the attributes named in
  `data-i18n-attrs` (e.g. placeholder, title), whitespace collapsed as the dashboard does."""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

from bertd.i18n.documents import document_texts

Extracted = tuple[int, str | None, str, list[str]]


def extract_python_calls(fileobj: IO[bytes], keywords: Mapping[str, Any], comment_tags: Collection[str],
                         options: Mapping[str, Any]) -> Iterator[Extracted]:
    """Calls of the keywords (Text, N_, translate, tr) with a literal first argument, found with the
    ast module: unlike Babel's tokenising python reader, it also finds calls nested inside the
    arguments of other calls (Text("...", rule=hints.get(name, Text("..."))))."""
    tree = ast.parse(fileobj.read().decode(options.get("encoding", "utf-8")))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        first = node.args[0]
        if name in keywords and isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield node.lineno, name, first.value, []


def extract_openapi(fileobj: IO[bytes], keywords: Mapping[str, Any], comment_tags: Collection[str],
                    options: Mapping[str, Any]) -> Iterator[Extracted]:
    """The Python messages of the file it is mapped to (openapi.py), then the document's texts."""
    from bertd.schema.openapi import build_openapi

    yield from extract_python_calls(fileobj, keywords, comment_tags, options)
    for text in dict.fromkeys(document_texts(build_openapi())):
        yield 1, None, text, ["OpenAPI document"]


def collapse(html: str) -> str:
    return " ".join(html.split())


MARKED_ELEMENT = re.compile(r"<(?P<tag>[a-zA-Z][\w-]*)(?P<attributes>[^>]*?\sdata-i18n(?=[\s=>])[^>]*)>"
                            r"(?P<inner>.*?)</(?P=tag)>", re.DOTALL)
MARKED_ATTRIBUTES = re.compile(r"<[a-zA-Z][\w-]*(?P<attributes>[^>]*?\sdata-i18n-attrs=\"(?P<names>[^\"]+)\"[^>]*)>")


def _attribute(attributes: str, name: str) -> str | None:
    match = re.search(rf"\s{re.escape(name)}=\"([^\"]*)\"", attributes)
    return match.group(1) if match else None


def extract_html(fileobj: IO[bytes], keywords: Mapping[str, Any], comment_tags: Collection[str],
                 options: Mapping[str, Any]) -> Iterator[Extracted]:
    source = fileobj.read().decode(options.get("encoding", "utf-8"))

    def line_of(offset: int) -> int:
        return source.count("\n", 0, offset) + 1

    for match in MARKED_ELEMENT.finditer(source):
        text = collapse(match.group("inner"))
        if text:
            yield line_of(match.start()), None, text, []
    for match in MARKED_ATTRIBUTES.finditer(source):
        for name in match.group("names").split(","):
            value = _attribute(match.group("attributes"), name.strip())
            if value:
                yield line_of(match.start()), None, value, []
