"""What a feed posts: one compact embed per change, up to ten per message, and the catch-up line.

Pure. The embed's title is the page, linked to the diff (or the page when there is none); the
description links the user and gives the size change with its sign, the kind of change and the
comment, escaped and shortened; the footer gives the time in UTC. Text from wikis is escaped as in
every other reply (`bot.markdown`).
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.answers import Change
from bot.feeds.matching import size_change
from bot.links import contributions_url, diff_url, page_url
from bot.markdown import clean, clip, escape, link
from bot.messages import EMBED_TITLE_LIMIT, EMBED_TOTAL_LIMIT, EMBEDS_PER_MESSAGE, Embed, Message
from teston.core.wikis import Wiki

COMMENT_LIMIT = 150
TITLE_LIMIT = 200
USER_LIMIT = 80
# A feed further behind than this many matching changes posts one catch-up line instead of them all.
MAX_BEHIND = 100


def format_signed(value: int) -> str:
    return f"+{value:,}" if value > 0 else f"{value:,}".replace("-", "−") if value < 0 else "±0"


def kind_of(change: Change) -> str:
    if change.type == "new":
        return "new page"
    if change.type == "log":
        return f"log: {clean(change.log_type)}/{clean(change.log_action)}"
    if change.type == "categorize":
        return "category"
    return clean(change.type)


def change_embed(change: Change) -> Embed:
    """One change as a compact embed."""
    title = clip(clean(change.title), TITLE_LIMIT) or "(no title)"
    url = diff_url(change) or (page_url(change.server_name, clean(change.title)) if change.title else None)
    parts = []
    if change.user_name:
        name = clean(change.user_name)
        parts.append(link(escape(clip(name, USER_LIMIT)), contributions_url(change.server_name, name)))
    size = size_change(change)
    if size is not None:
        parts.append(f"**{format_signed(size)}**")
    parts.append(escape(kind_of(change) + (", bot" if change.bot else "")))
    comment = clip(clean(change.comment), COMMENT_LIMIT)
    if comment:
        parts.append(f"“{escape(comment)}”")
    return Embed(
        title=clip(title, EMBED_TITLE_LIMIT),
        url=url,
        description=" · ".join(parts),
        footer=f"{change.server_name} · {change.event_time:%Y-%m-%d %H:%M:%S} UTC",
    )


def fitting(changes: Sequence[Change]) -> int:
    """How many of `changes`, from the first, fit one message (10 embeds, 6,000 characters)."""
    total = 0
    for count, change in enumerate(changes[:EMBEDS_PER_MESSAGE]):
        total += change_embed(change).size()
        if total > EMBED_TOTAL_LIMIT:
            return max(count, 1)
    return min(len(changes), EMBEDS_PER_MESSAGE)


def changes_message(changes: Sequence[Change]) -> Message:
    """The message posting `changes` (at most as many as `fitting` allows)."""
    return Message(embeds=tuple(change_embed(change) for change in changes))


def skipped_line(skipped: int, wiki: Wiki, prefix: str) -> str:
    """The one line a feed posts instead of `skipped` changes when it fell too far behind."""
    noun = "change" if skipped == 1 else "changes"
    return (
        f"Skipped {skipped:,} {noun} on {wiki.server_name} to catch up (more than {MAX_BEHIND} were "
        f"waiting); the newest follow. See recent ones with {prefix}recent {wiki.label} 100, or a whole "
        f"day with teston feed preview."
    )


def skipped_message(skipped: int, wiki: Wiki, prefix: str) -> Message:
    return Message(content=skipped_line(skipped, wiki, prefix))


def plain_post(change: Change) -> str:
    """A post as one line of plain text, for `teston feed preview`."""
    size = size_change(change)
    url = diff_url(change) or (page_url(change.server_name, clean(change.title)) if change.title else "-")
    return " | ".join(
        [
            f"{change.event_time:%Y-%m-%d %H:%M:%S} UTC",
            clean(change.title) or "-",
            clean(change.user_name) or "-",
            format_signed(size) if size is not None else "-",
            kind_of(change) + (", bot" if change.bot else ""),
            clip(clean(change.comment), COMMENT_LIMIT) or "-",
            url,
        ]
    )
