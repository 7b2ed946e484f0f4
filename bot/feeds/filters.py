"""The filter words of `!watch`: parsed into a `FeedFilter`, and written back in one canonical form.

Pure. The canonical form is what the feeds table stores and `!watches` shows; parsing it again gives
the same filter, so a feed behaves the same after a restart as when it was created.

    type=edit|new|log|categorize   (repeatable, or comma-separated; default: edit, new and log)
    ns=<n>[,<n>…]                  namespace numbers
    bots                           include bot changes (left out unless given)
    minor=no                       leave out minor edits
    min=<bytes>                    absolute size change at least this
    title=<prefix>                 titles starting with this (underscores are spaces)
    user=<name>                    changes by this user (underscores are spaces)
    anon                           only anonymous editors and temporary accounts
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

TYPES = ("edit", "new", "log", "categorize")
# Category membership changes are noise for most channels, as `!recent` leaves them out unless asked.
DEFAULT_TYPES = frozenset({"edit", "new", "log"})
# MediaWiki's namespaces are small integers (negative for Special and Media); more is a typo.
MAX_NAMESPACE = 100_000
MAX_MIN_BYTES = 10_000_000
MAX_NAMESPACES = 20
MAX_TEXT = 100

_INTEGER = re.compile(r"-?\d+")


class FilterError(ValueError):
    """A filter word cannot be used; the message says which and why, in plain text."""


@dataclass(frozen=True, slots=True)
class FeedFilter:
    """Which changes of a wiki a feed posts."""

    types: frozenset[str] = DEFAULT_TYPES
    namespaces: frozenset[int] | None = None
    bots: bool = False
    minor: bool = True
    min_bytes: int | None = None
    title_prefix: str | None = None
    user: str | None = None
    anonymous_only: bool = False

    def words(self) -> str:
        """The canonical filter words (empty for the default filter)."""
        parts = []
        if self.types != DEFAULT_TYPES:
            parts.append("type=" + ",".join(t for t in TYPES if t in self.types))
        if self.namespaces is not None:
            parts.append("ns=" + ",".join(str(n) for n in sorted(self.namespaces)))
        if self.bots:
            parts.append("bots")
        if not self.minor:
            parts.append("minor=no")
        if self.min_bytes is not None:
            parts.append(f"min={self.min_bytes}")
        if self.title_prefix is not None:
            parts.append("title=" + self.title_prefix.replace(" ", "_"))
        if self.user is not None:
            parts.append("user=" + self.user.replace(" ", "_"))
        if self.anonymous_only:
            parts.append("anon")
        return " ".join(parts)


DEFAULT_FILTER = FeedFilter()


def _shown(text: str) -> str:
    return f"'{text[:40]}…'" if len(text) > 40 else f"'{text}'"


def _wiki_text(word: str, value: str) -> str:
    # MediaWiki writes spaces in titles and user names as underscores in URLs and commands alike.
    text = value.replace("_", " ").strip()
    if not text:
        raise FilterError(f"{word}= needs a value.")
    if len(text) > MAX_TEXT:
        raise FilterError(f"{word}= is too long (at most {MAX_TEXT} characters).")
    return text


def parse_filters(tokens: Sequence[str]) -> FeedFilter:
    """The filter a list of words asks for; `FilterError` on the first word that cannot be used."""
    types: set[str] = set()
    namespaces: set[int] | None = None
    bots = anonymous = False
    minor = True
    min_bytes: int | None = None
    title: str | None = None
    user: str | None = None
    for token in tokens:
        word, equals, value = token.partition("=")
        word = word.lower()
        if not equals:
            if word in ("bots", "bot", "+bots"):
                bots = True
            elif word in ("anon", "anonymous"):
                anonymous = True
            else:
                raise FilterError(f"Unknown filter {_shown(token)}.")
            continue
        if word == "type":
            for kind in value.lower().replace("|", ",").split(","):
                if kind not in TYPES:
                    raise FilterError(
                        f"Unknown change type {_shown(kind)}; use edit, new, log or categorize."
                    )
                types.add(kind)
        elif word in ("ns", "namespace"):
            namespaces = namespaces or set()
            for number in value.split(","):
                if not _INTEGER.fullmatch(number.strip()) or abs(int(number)) > MAX_NAMESPACE:
                    raise FilterError(f"{_shown(number)} is not a namespace number (0 is articles).")
                namespaces.add(int(number))
            if len(namespaces) > MAX_NAMESPACES:
                raise FilterError(f"At most {MAX_NAMESPACES} namespaces.")
        elif word == "minor":
            if value.lower() not in ("no", "false", "0"):
                raise FilterError("minor= only takes no (minor edits are shown unless minor=no).")
            minor = False
        elif word == "min":
            if not value.isdigit() or not 0 < int(value) <= MAX_MIN_BYTES:
                raise FilterError(
                    f"min= takes a number of bytes from 1 to {MAX_MIN_BYTES:,}, not {_shown(value)}."
                )
            min_bytes = int(value)
        elif word == "title":
            if title is not None:
                raise FilterError("Give title= once.")
            title = _wiki_text("title", value)
        elif word == "user":
            if user is not None:
                raise FilterError("Give user= once.")
            user = _wiki_text("user", value)
        else:
            raise FilterError(f"Unknown filter {_shown(token)}.")
    return FeedFilter(
        types=frozenset(types) or DEFAULT_TYPES,
        namespaces=None if namespaces is None else frozenset(namespaces),
        bots=bots,
        minor=minor,
        min_bytes=min_bytes,
        title_prefix=title,
        user=user,
        anonymous_only=anonymous,
    )


def parse_filter_words(words: str) -> FeedFilter:
    """A filter from its canonical words (as stored), or from the words of a command."""
    return parse_filters(words.split())
