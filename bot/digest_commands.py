"""The digest commands in the command core: `!digest`, `!undigest` and `!digests`, checked against the
channel and the Manage Channels permission."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot import digest_store
from bot.answers import Digest, DigestList, DigestSet, DigestsRemoved
from bot.requests import Command, DigestRequest, DigestsRequest, UndigestRequest, UsageError
from teston.core.wikis import WikiCatalog

if TYPE_CHECKING:
    from bot.commands import CommandCore, Invoker

# More digests than this in one server is a mistake, and each one is a post every day.
MAX_DIGESTS_PER_GUILD = 10


def digest_of(catalog: WikiCatalog, stored: digest_store.StoredDigest) -> Digest:
    """A stored digest as answers show it."""
    return Digest(
        id=stored.id,
        channel_id=stored.channel_id,
        wiki=catalog.by_dbname(stored.wiki),
        dbname=stored.wiki,
        at=stored.post_at,
        last_day=stored.last_day,
        paused_reason=stored.paused_reason,
        paused_at=stored.paused_at,
    )


async def answer_digest_request(
    core: CommandCore, request: DigestRequest | UndigestRequest | DigestsRequest, invoker: Invoker
) -> DigestSet | DigestsRemoved | DigestList:
    command = (
        Command.DIGEST
        if isinstance(request, DigestRequest)
        else Command.UNDIGEST
        if isinstance(request, UndigestRequest)
        else Command.DIGESTS
    )
    if invoker.channel_id is None:
        raise UsageError(command, "Digests are posted in a Discord channel; use this command there.")
    channel = invoker.channel_id
    if isinstance(request, DigestsRequest):
        async with core.database.connection() as conn:
            stored = await digest_store.digests_of(conn, invoker.guild_id, channel)
        return DigestList(tuple(digest_of(core.catalog, each) for each in stored))
    if invoker.guild_id is not None and not invoker.can_manage_channels:
        raise UsageError(command, "Only members with the Manage Channels permission can change digests.")
    if isinstance(request, UndigestRequest):
        wiki = None if request.language is None else core.resolve(command, request.language)
        async with core.database.connection() as conn:
            removed = await digest_store.remove_digests(
                conn,
                guild_id=invoker.guild_id,
                channel_id=channel,
                digest_id=request.digest_id,
                wiki=None if wiki is None else wiki.dbname,
            )
        if not removed:
            what = f"number {request.digest_id}" if wiki is None else f"of '{wiki.label}' in this channel"
            raise UsageError(command, f"There is no digest {what}.")
        return DigestsRemoved(tuple(digest_of(core.catalog, each) for each in removed))
    wiki = core.resolve(command, request.language)
    async with core.database.connection() as conn, conn.transaction():
        existing = await digest_store.digests_of(conn, invoker.guild_id, channel)
        is_new = not any(d.channel_id == channel and d.wiki == wiki.dbname for d in existing)
        if is_new and len(existing) >= MAX_DIGESTS_PER_GUILD:
            raise UsageError(command, f"A server has at most {MAX_DIGESTS_PER_GUILD} digests.")
        stored_digest, created = await digest_store.set_digest(
            conn,
            guild_id=invoker.guild_id,
            channel_id=channel,
            wiki=wiki.dbname,
            post_at=request.at,
            created_by=invoker.user_id,
            created_at=core.clock(),
        )
    return DigestSet(digest_of(core.catalog, stored_digest), created=created)
