"""The `digests` and `digest_posts` tables: which channels get a daily digest, and which days were posted.

A post is claimed before it is sent: `(digest_id, day)` is the key of `digest_posts`, so of two bot
processes only one inserts the claim. A claim not marked posted within `lease` (its process died before
Discord accepted the message) may be taken over, so a day is not lost with the process that claimed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from teston.core.statuses import DayStatus


@dataclass(frozen=True, slots=True)
class StoredDigest:
    id: int
    guild_id: int | None
    channel_id: int
    wiki: str
    post_at: time
    created_at: datetime
    last_day: date | None = None
    paused_reason: str | None = None
    paused_at: datetime | None = None


_SELECT = (
    "SELECT d.id, d.guild_id, d.channel_id, d.wiki, d.post_at, d.created_at, d.paused_reason, d.paused_at,"
    " (SELECT max(p.day) FROM digest_posts p"
    "  WHERE p.digest_id = d.id AND p.posted_at IS NOT NULL) AS last_day"
    " FROM digests d"
)


async def _digests(conn: AsyncConnection[Any], where: str, params: tuple[Any, ...]) -> list[StoredDigest]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(f"{_SELECT} {where} ORDER BY d.id", params)
        return [StoredDigest(**row) for row in await cursor.fetchall()]


async def all_digests(conn: AsyncConnection[Any]) -> list[StoredDigest]:
    return await _digests(conn, "", ())


async def active_digests(conn: AsyncConnection[Any]) -> list[StoredDigest]:
    """Every digest that is not paused."""
    return await _digests(conn, "WHERE d.paused_reason IS NULL", ())


async def pause_digest(conn: AsyncConnection[Any], digest_id: int, reason: str) -> None:
    await conn.execute(
        "UPDATE digests SET paused_reason = %s, paused_at = now() WHERE id = %s", (reason, digest_id)
    )


async def digests_of(conn: AsyncConnection[Any], guild_id: int | None, channel_id: int) -> list[StoredDigest]:
    """A server's digests (or, outside a server, the channel's)."""
    if guild_id is None:
        return await _digests(conn, "WHERE d.guild_id IS NULL AND d.channel_id = %s", (channel_id,))
    return await _digests(conn, "WHERE d.guild_id = %s", (guild_id,))


async def set_digest(
    conn: AsyncConnection[Any],
    *,
    guild_id: int | None,
    channel_id: int,
    wiki: str,
    post_at: time,
    created_by: int | None,
    created_at: datetime,
) -> tuple[StoredDigest, bool]:
    """Add the channel's digest of `wiki`, or move (and resume) an existing one; True if it is new."""
    cursor = await conn.execute(
        "INSERT INTO digests (guild_id, channel_id, wiki, post_at, created_by, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (channel_id, wiki) DO UPDATE"
        " SET post_at = EXCLUDED.post_at, paused_reason = NULL, paused_at = NULL"
        " RETURNING id, xmax = 0",
        (guild_id, channel_id, wiki, post_at, created_by, created_at),
    )
    [row] = await cursor.fetchall()
    [digest] = await _digests(conn, "WHERE d.id = %s", (row[0],))
    return digest, bool(row[1])


async def remove_digests(
    conn: AsyncConnection[Any],
    *,
    guild_id: int | None,
    channel_id: int,
    digest_id: int | None = None,
    wiki: str | None = None,
) -> list[StoredDigest]:
    """Delete a digest by id (within the server) or by wiki (in the channel); the digests removed."""
    params: tuple[Any, ...]
    if digest_id is not None:
        scope = "d.guild_id = %s" if guild_id is not None else "d.guild_id IS NULL AND d.channel_id = %s"
        where, params = f"WHERE d.id = %s AND {scope}", (digest_id, guild_id or channel_id)
    else:
        where, params = "WHERE d.channel_id = %s AND d.wiki = %s", (channel_id, wiki)
    removed = await _digests(conn, where, params)
    if removed:
        await conn.execute("DELETE FROM digests WHERE id = ANY(%s)", ([d.id for d in removed],))
    return removed


async def posted_days(conn: AsyncConnection[Any], digest_id: int, since: date) -> set[date]:
    """The days since `since` whose post of the digest was sent."""
    cursor = await conn.execute(
        "SELECT day FROM digest_posts WHERE digest_id = %s AND day >= %s AND posted_at IS NOT NULL",
        (digest_id, since),
    )
    return {row[0] for row in await cursor.fetchall()}


async def claim_post(
    conn: AsyncConnection[Any], digest_id: int, day: date, *, claimer: str, lease: timedelta
) -> bool:
    """Claim the post of `day`; False if it was posted, or another process claimed it within `lease`.

    The claimer of an unposted day may claim it again at once: a post it could not finish is sent again
    with the same nonces, which Discord answers with the messages it already created.
    """
    cursor = await conn.execute(
        "INSERT INTO digest_posts (digest_id, day, claimed_by, claimed_at) VALUES (%s, %s, %s, now())"
        " ON CONFLICT (digest_id, day) DO UPDATE SET claimed_by = EXCLUDED.claimed_by, claimed_at = now()"
        " WHERE digest_posts.posted_at IS NULL"
        " AND (digest_posts.claimed_by = EXCLUDED.claimed_by OR digest_posts.claimed_at < now() - %s)"
        " RETURNING day",
        (digest_id, day, claimer, lease),
    )
    return await cursor.fetchone() is not None


async def record_post(conn: AsyncConnection[Any], digest_id: int, day: date, message_id: int | None) -> None:
    await conn.execute(
        "UPDATE digest_posts SET posted_at = now(), message_id = %s WHERE digest_id = %s AND day = %s",
        (message_id, digest_id, day),
    )


async def day_is_final(conn: AsyncConnection[Any], day: date) -> bool:
    cursor = await conn.execute("SELECT status = %s FROM day_rollups WHERE day = %s", (DayStatus.FINAL, day))
    row = await cursor.fetchone()
    return bool(row and row[0])
