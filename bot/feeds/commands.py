"""`!watch`, `!unwatch` and `!watches` in the command core: permissions, the wiki catalog, the feeds table."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.feeds import store
from bot.feeds.answers import MAX_FEEDS_PER_GUILD, FeedAnswer, FeedCreated, FeedList, FeedRemoved
from bot.requests import Command, FeedRequest, UnwatchRequest, UsageError, WatchesRequest, WatchRequest
from teston.core.wikis import Wiki, WikiCatalog

if TYPE_CHECKING:
    from bot.commands import ConnectionSource, Invoker

NOT_IN_A_SERVER = "Feeds post in a server's channel; use this command in one."
NEEDS_MANAGE_CHANNELS = "Only members with the Manage Channels permission can change this server's feeds."


async def answer_feed_request(
    request: FeedRequest,
    invoker: Invoker,
    *,
    database: ConnectionSource,
    catalog: WikiCatalog,
    resolve: Callable[[Command, str], Wiki],
) -> FeedAnswer:
    """Create, remove or list this server's feeds; `UsageError` for what the invoker cannot do."""
    command = (
        Command.WATCH
        if isinstance(request, WatchRequest)
        else Command.UNWATCH
        if isinstance(request, UnwatchRequest)
        else Command.WATCHES
    )
    if invoker.guild_id is None or (isinstance(request, WatchRequest) and invoker.channel_id is None):
        raise UsageError(command, NOT_IN_A_SERVER)
    if isinstance(request, WatchesRequest):
        async with database.connection() as conn:
            feeds = await store.guild_feeds(conn, invoker.guild_id)
        wikis = {feed.wiki: wiki for feed in feeds if (wiki := catalog.by_dbname(feed.wiki)) is not None}
        return FeedList(feeds=tuple(feeds), wikis=wikis)
    if not invoker.can_manage_channels:
        raise UsageError(command, NEEDS_MANAGE_CHANNELS)
    if isinstance(request, UnwatchRequest):
        async with database.connection() as conn:
            removed = await store.delete_feed(conn, invoker.guild_id, request.feed_id)
        if removed is None:
            raise UsageError(Command.UNWATCH, f"This server has no feed {request.feed_id}; see !watches.")
        return FeedRemoved(removed)
    wiki = resolve(Command.WATCH, request.language)
    if invoker.channel_id is None:  # refused above already; said again for the type checker
        raise UsageError(command, NOT_IN_A_SERVER)
    try:
        async with database.connection() as conn:
            created = await store.create_feed(
                conn,
                guild_id=invoker.guild_id,
                channel_id=invoker.channel_id,
                wiki=wiki.dbname,
                filters=request.filters.words(),
                created_by=invoker.user_id,
            )
    except store.TooManyFeeds:
        raise UsageError(
            Command.WATCH, f"This server already has {MAX_FEEDS_PER_GUILD} feeds; remove one with !unwatch."
        ) from None
    return FeedCreated(feed=created, wiki=wiki)
