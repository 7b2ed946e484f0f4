"""Discord messages as data: text and embeds, split to fit Discord's limits.

Pure, and free of discord.py: the cog turns these into `discord.Embed`s with `Embed.from_dict`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.markdown import clip

# Discord's documented limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
MESSAGE_LIMIT = 2000
EMBED_TITLE_LIMIT = 256
EMBED_DESCRIPTION_LIMIT = 4096
EMBED_FIELDS_LIMIT = 25
EMBED_FIELD_VALUE_LIMIT = 1024
EMBED_TOTAL_LIMIT = 6000
EMBEDS_PER_MESSAGE = 10

COLOR = 0x3366CC  # Wikimedia blue


@dataclass(frozen=True, slots=True)
class EmbedField:
    name: str
    value: str
    inline: bool = False


@dataclass(frozen=True, slots=True)
class Embed:
    """An embed already within Discord's per-part limits (the constructor helpers clip)."""

    title: str | None = None
    description: str | None = None
    url: str | None = None
    fields: tuple[EmbedField, ...] = ()
    footer: str | None = None
    color: int = COLOR

    def to_dict(self) -> dict[str, Any]:
        """The embed as Discord's JSON (also what `discord.Embed.from_dict` takes)."""
        data: dict[str, Any] = {"type": "rich", "color": self.color}
        if self.title:
            data["title"] = self.title
        if self.description:
            data["description"] = self.description
        if self.url:
            data["url"] = self.url
        if self.fields:
            data["fields"] = [{"name": f.name, "value": f.value, "inline": f.inline} for f in self.fields]
        if self.footer:
            data["footer"] = {"text": self.footer}
        return data

    def size(self) -> int:
        """Characters counted against the 6,000 per message (title, description, fields, footer)."""
        return (
            len(self.title or "")
            + len(self.description or "")
            + sum(len(f.name) + len(f.value) for f in self.fields)
            + len(self.footer or "")
        )


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a message (a chart's PNG); `teston ask` writes it to a directory instead."""

    filename: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Message:
    content: str = ""
    embeds: tuple[Embed, ...] = ()
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Reply:
    """Messages to send in order; `private` ones are shown only to the caller where possible."""

    messages: tuple[Message, ...]
    private: bool = False
    # The first line, unformatted: logs and tests read it.
    summary: str = field(default="", compare=False)


def split_lines(lines: Iterable[str], limit: int) -> list[str]:
    """Join lines into chunks of at most `limit` characters, cutting only lines that alone exceed it."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        while len(line) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            chunks.append(current)
            current = line
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


def pack(content_lines: Sequence[str], embeds: Sequence[Embed] = ()) -> tuple[Message, ...]:
    """Messages within Discord's limits: content split at line ends, then embeds added while they fit."""
    messages = [Message(content=chunk) for chunk in split_lines(content_lines, MESSAGE_LIMIT)]
    for embed in embeds:
        last = messages[-1] if messages else None
        fits = (
            last is not None
            and len(last.embeds) < EMBEDS_PER_MESSAGE
            and sum(e.size() for e in last.embeds) + embed.size() <= EMBED_TOTAL_LIMIT
        )
        if last is not None and fits:
            messages[-1] = Message(content=last.content, embeds=(*last.embeds, embed))
        else:
            messages.append(Message(embeds=(embed,)))
    return tuple(messages) or (Message(content="(nothing to show)"),)


def embeds_from_lines(
    lines: Sequence[str], *, title: str | None = None, url: str | None = None
) -> list[Embed]:
    """Description-only embeds holding `lines`, each within the description limit."""
    chunks = split_lines(lines, EMBED_DESCRIPTION_LIMIT)
    return [
        Embed(
            title=clip(title, EMBED_TITLE_LIMIT) if title and i == 0 else None,
            url=url if i == 0 else None,
            description=chunk,
        )
        for i, chunk in enumerate(chunks)
    ]
