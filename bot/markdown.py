"""Wiki and user text made safe for Discord markdown: one line, no formatting, links or mentions.

Pure. Discord honours a backslash before any markdown character; the set escaped here covers
formatting, block quotes, headings, code, spoilers, masked links and `<…>` mentions, emoji and timestamps.
"""

from __future__ import annotations

import re

# Escaping the brackets is enough to break a masked link `[text](url)`; parentheses stay readable.
_MARKDOWN_SPECIAL = re.compile(r"([\\*_~|`>\[\]<#])")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_BIDI_AND_ZERO_WIDTH = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: str | None) -> str:
    """Wiki or user text on one line: control characters and line breaks become single spaces."""
    if not text:
        return ""
    if text.isprintable():
        # Every character the two patterns replace is unprintable (Cc, Cf, Zl, Zp): most text has none.
        return text.strip()
    return _BIDI_AND_ZERO_WIDTH.sub("", _CONTROL_OR_NEWLINE.sub(" ", text)).strip()


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def escape(text: str | None) -> str:
    """Text safe inside Discord markdown: no formatting, links, mentions or line breaks of its own."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", clean(text))
    # A zero-width space after `@` is how Discord's own clients keep `@everyone` from being a mention.
    return escaped.replace("@", "@\u200b")


def link(text: str, url: str) -> str:
    """A markdown link whose text is already escaped (links inside embeds are never previewed)."""
    return f"[{text}]({url})"
