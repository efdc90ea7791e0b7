"""Keeping what a failed task says short without cutting it in the middle: lists that name a few
items and count the rest, and messages shortened at a clause boundary."""

from __future__ import annotations

from collections.abc import Iterable

from bertd.i18n import Text

# A task's error message (what went wrong) stays under this; the hint (what to do) is ours and
# always kept whole.
MAX_MESSAGE_CHARACTERS = 400
MAX_LISTED_CHARACTERS = 200


def listed(items: Iterable[object], limit: int = MAX_LISTED_CHARACTERS) -> Text | str:
    """'a, b, c', or as many as fit in `limit` characters and 'and N more'."""
    names = [str(item) for item in items]
    shown: list[str] = []
    length = 0
    for index, name in enumerate(names):
        if shown and length + len(name) + 2 > limit:
            return Text("{names} and {count} more", names=", ".join(shown), count=len(names) - index)
        shown.append(name)
        length += len(name) + 2
    return ", ".join(shown)


def shortened(text: str, limit: int = MAX_MESSAGE_CHARACTERS) -> str:
    """`text` on one line if it fits in `limit`; else its longest head that ends at a clause
    boundary ('; ', ': ', ', ' or at least a space), never inside a word, marked with '…'."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[: limit - 2]
    for boundary in ("; ", ": ", ", ", " "):
        cut = head.rfind(boundary)
        if cut >= limit // 3:
            return head[:cut].rstrip(",;: ") + " …"
    return head.rstrip() + " …"
