"""The feeds table and the rows feeds read: each function runs its statements on a connection it is given.

Feeds read `recent_changes` by arrival (see `teston.core.schema.RecentChange.arrival`): a row that arrives
late, for an old event time, still comes after the cursor. The cursor moves in `finish_step`, which the
poster calls only once Discord accepted the message.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from bot.answers import Change
from bot.feeds.answers import MAX_FEEDS_PER_GUILD, FeedRow
from bot.feeds.matching import FeedChange
from teston.core.locks import feeds_lock_key
from teston.core.notices import CHANGES_CHANNEL, wikis_payload

_FEED_COLUMNS = sql.SQL(", ").join(sql.Identifier(f.name) for f in fields(FeedRow))
_CHANGE_COLUMNS = sql.SQL(", ").join(sql.Identifier(f.name) for f in fields(Change))


class TooManyFeeds(Exception):
    """The server already has `MAX_FEEDS_PER_GUILD` feeds."""


def _feed(row: dict[str, Any]) -> FeedRow:
    return FeedRow(**row)


async def create_feed(
    conn: AsyncConnection[Any],
    *,
    guild_id: int,
    channel_id: int,
    wiki: str,
    filters: str,
    created_by: int | None,
) -> FeedRow:
    """A new feed starting after the wiki's newest stored change; `TooManyFeeds` past the limit."""
    # Serialises `!watch` within a server, so two at once cannot both pass the limit.
    await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", feeds_lock_key(guild_id))
    cursor = await conn.execute("SELECT count(*) FROM feeds WHERE guild_id = %s", (guild_id,))
    (count,) = await cursor.fetchone() or (0,)
    if count >= MAX_FEEDS_PER_GUILD:
        raise TooManyFeeds
    # Any committed arrival is a safe start: rows not visible yet will all get larger numbers.
    query = sql.SQL(
        "INSERT INTO feeds (guild_id, channel_id, wiki, filters, created_by, cursor)"
        " SELECT %(guild)s, %(channel)s, %(wiki)s, %(filters)s, %(by)s,"
        " coalesce((SELECT max(arrival) FROM recent_changes WHERE wiki = %(wiki)s), 0)"
        " RETURNING {}"
    ).format(_FEED_COLUMNS)
    params = {"guild": guild_id, "channel": channel_id, "wiki": wiki, "filters": filters, "by": created_by}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        [row] = await cur.fetchall()
    # Wakes the poster (it listens for new changes) to start the feed at once, on commit. It names the
    # feed's wiki, so that the bots' kept `!recent` answers of other wikis stay kept (`bot.command_reads`).
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, wikis_payload([wiki])))
    return _feed(row)


async def delete_feed(conn: AsyncConnection[Any], guild_id: int, feed_id: int) -> FeedRow | None:
    """Remove one of the server's feeds; None if the server has no feed with that id."""
    query = sql.SQL("DELETE FROM feeds WHERE id = %s AND guild_id = %s RETURNING {}").format(_FEED_COLUMNS)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, (feed_id, guild_id))
        row = await cur.fetchone()
    return None if row is None else _feed(row)


async def _feeds_where(conn: AsyncConnection[Any], condition: str, params: tuple[Any, ...]) -> list[FeedRow]:
    """The feeds matching `condition` (SQL over the feeds' columns, with `params`), by id."""
    query = sql.SQL("SELECT {} FROM feeds WHERE {} ORDER BY id").format(_FEED_COLUMNS, sql.SQL(condition))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return [_feed(row) for row in await cur.fetchall()]


async def guild_feeds(conn: AsyncConnection[Any], guild_id: int) -> list[FeedRow]:
    return await _feeds_where(conn, "guild_id = %s", (guild_id,))


async def active_feeds(conn: AsyncConnection[Any]) -> list[FeedRow]:
    """Every feed that is not paused."""
    return await _feeds_where(conn, "paused_reason IS NULL", ())


async def channel_feeds(conn: AsyncConnection[Any], channel_id: int) -> list[FeedRow]:
    """The channel's feeds that are not paused, by id."""
    return await _feeds_where(conn, "channel_id = %s AND paused_reason IS NULL", (channel_id,))


async def feed(conn: AsyncConnection[Any], feed_id: int) -> FeedRow | None:
    query = sql.SQL("SELECT {} FROM feeds WHERE id = %s").format(_FEED_COLUMNS)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, (feed_id,))
        row = await cur.fetchone()
    return None if row is None else _feed(row)


_READ_AFTER = sql.SQL(
    "SELECT arrival, minor, {columns} FROM recent_changes"
    " WHERE wiki = %(wiki)s AND arrival > %(after)s AND arrival <= %(upto)s"
    " ORDER BY arrival LIMIT %(limit)s"
).format(columns=_CHANGE_COLUMNS)

# No arrival is this large; "up to the end" without a second statement.
_NO_LIMIT = 2**63 - 1


async def changes_after(
    conn: AsyncConnection[Any], wiki: str, after: int, *, upto: int | None, limit: int
) -> list[FeedChange]:
    """Up to `limit` of the wiki's rows arrived after `after` (and at most `upto`), in arrival order."""
    params = {"wiki": wiki, "after": after, "upto": _NO_LIMIT if upto is None else upto, "limit": limit}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_READ_AFTER, params)
        rows = await cur.fetchall()
    return [
        FeedChange(arrival=row.pop("arrival"), minor=row.pop("minor"), change=Change(**row)) for row in rows
    ]


_DAY_CHANGES = sql.SQL(
    "SELECT coalesce(arrival, 0) AS arrival, minor, {columns} FROM recent_changes"
    " WHERE wiki = %(wiki)s AND event_time >= %(start)s AND event_time < %(end)s"
    " ORDER BY event_time, rcid NULLS LAST, event_id"
).format(columns=_CHANGE_COLUMNS)


async def changes_between(
    conn: AsyncConnection[Any], wiki: str, start: datetime, end: datetime
) -> list[FeedChange]:
    """The wiki's stored changes with an event time in [start, end), oldest first (for previews)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_DAY_CHANGES, {"wiki": wiki, "start": start, "end": end})
        rows = await cur.fetchall()
    return [
        FeedChange(arrival=row.pop("arrival"), minor=row.pop("minor"), change=Change(**row)) for row in rows
    ]


async def begin_step(
    conn: AsyncConnection[Any], feed_id: int, to: int, *, skip: bool, shared_nonce: str | None = None
) -> None:
    """Write down the message about to be sent, so a restart resends that one and no other
    (`shared_nonce`: a message carrying several feeds of the channel, each written down with it)."""
    await conn.execute(
        "UPDATE feeds SET pending_to = %s, pending_skip = %s, pending_nonce = %s WHERE id = %s",
        (to, skip, shared_nonce, feed_id),
    )


async def sharing_feeds(conn: AsyncConnection[Any], channel_id: int, shared_nonce: str) -> list[FeedRow]:
    """The feeds whose pending step belongs to the shared message `shared_nonce`, by id."""
    return await _feeds_where(conn, "channel_id = %s AND pending_nonce = %s", (channel_id, shared_nonce))


async def finish_step(
    conn: AsyncConnection[Any], feed_id: int, to: int, *, posted: int = 0, skipped: int = 0
) -> None:
    """Move the cursor to `to` once Discord accepted the message (or nothing needed posting)."""
    await conn.execute(
        "UPDATE feeds SET cursor = greatest(cursor, %(to)s), pending_to = NULL, pending_skip = false,"
        " pending_nonce = NULL,"
        " posted = posted + %(posted)s, skipped = skipped + %(skipped)s,"
        " last_posted_at = CASE WHEN %(posted)s + %(skipped)s > 0 THEN now() ELSE last_posted_at END"
        " WHERE id = %(id)s",
        {"to": to, "posted": posted, "skipped": skipped, "id": feed_id},
    )


async def advance(conn: AsyncConnection[Any], feed_id: int, to: int) -> None:
    """Move the cursor past rows that match nothing, unless a message for the feed is pending."""
    await conn.execute(
        "UPDATE feeds SET cursor = greatest(cursor, %s) WHERE id = %s AND pending_to IS NULL", (to, feed_id)
    )


async def pause_feed(conn: AsyncConnection[Any], feed_id: int, reason: str) -> None:
    await conn.execute(
        "UPDATE feeds SET paused_reason = %s, paused_at = now() WHERE id = %s", (reason, feed_id)
    )
