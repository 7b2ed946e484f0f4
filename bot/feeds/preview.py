"""What a feed would have posted for one stored UTC day: `teston feed preview`, without Discord."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg import AsyncConnection

from bot.argument_text import tokenize
from bot.feeds import store
from bot.feeds.matching import FeedChange, matches
from bot.feeds.posts import plain_post
from bot.requests import Command, WatchRequest
from bot.subscription_arguments import parse_watch
from teston.core.partitions import day_bounds
from teston.core.wikis import Wiki, WikiCatalog


@dataclass(frozen=True, slots=True)
class Preview:
    wiki: Wiki
    day: date
    matching: tuple[FeedChange, ...]

    def lines(self, limit: int | None = None) -> list[str]:
        """`N changes match`, then one line per post, oldest first (the first `limit` posts)."""
        count = len(self.matching)
        shown = self.matching if limit is None else self.matching[:limit]
        head = f"{count} change{'' if count == 1 else 's'} match"
        return [head, *(plain_post(item.change) for item in shown)]


def watch_arguments(text: str) -> WatchRequest:
    """`!watch`'s arguments (`en type=edit ns=0`), with or without the command; `UsageError` if unusable."""
    body = text.strip()
    for prefix in ("!watch ", "/watch ", "watch "):
        if body.lower().startswith(prefix):
            body = body[len(prefix) :]
            break
    return parse_watch(tokenize(Command.WATCH, body))


async def preview_day(
    conn: AsyncConnection[Any], catalog: WikiCatalog, request: WatchRequest, day: date
) -> Preview:
    """The stored changes of `day` (UTC) that a feed made by `request` would post, oldest first."""
    wiki = catalog.resolve(request.language)
    start, end = day_bounds(day)
    changes = await store.changes_between(conn, wiki.dbname, start, end)
    return Preview(wiki=wiki, day=day, matching=tuple(c for c in changes if matches(request.filters, c)))
