"""A channel's feeds share a message when it has room: through the fake Discord, with a restart between
Discord accepting a shared message and the cursors moving."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from bot.commands import CommandCore
from bot.feeds.discord_channels import DiscordChannels
from tests.fakediscord import FakeDiscord
from tests.replays import ingest_file
from tests.test_feeds_discord import (
    CAPTURE,
    CATALOG,
    Crash,
    CrashAfterPosting,
    assert_posts_are,
    command,
    core,
    expected_rows,
    fake_discord,
    feed_attempts,
    feed_bot,
    feed_embeds,
    feed_messages,
    make_poster,
    pool,
    wait_for_embeds,
)

__all__ = ["core", "fake_discord", "pool"]  # fixtures used by name

# Three small wikis of the capture (7, 6 and 7 changes a default feed posts): 20 changes, two full messages.
WIKIS = {"sv": "svwiki", "nl": "nlwiki", "ko": "kowiki"}


def _expected(wiki: str) -> list[dict[str, Any]]:
    return expected_rows(lambda r: r["wiki"] == wiki and not r["bot"] and r["type"] in ("edit", "new", "log"))


def _by_wiki(embeds: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    servers = {wiki: _expected(wiki)[0]["server_name"] for wiki in WIKIS.values()}
    return {
        wiki: [e for e in embeds if e["footer"]["text"].startswith(f"{server} ")]
        for wiki, server in servers.items()
    }


async def _feeds(pool: AsyncConnectionPool) -> dict[str, tuple[int, int, Any, Any]]:
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT wiki, posted, cursor, pending_to, pending_nonce FROM feeds")
        return {row[0]: tuple(row[1:]) for row in await cursor.fetchall()}


async def _run_until(poster: Any, channels: Any, fake: FakeDiscord, counts: dict[Any, int]) -> None:
    task = asyncio.create_task(poster.run(channels))
    try:
        for channel, count in counts.items():
            await wait_for_embeds(fake, channel, count, timeout=30)
        await asyncio.sleep(0.5)  # nothing more comes
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_channels_feeds_share_its_messages_and_each_posts_its_own_changes_once(
    fake_discord: FakeDiscord, core: CommandCore, pool: AsyncConnectionPool, db_url: str
) -> None:
    expected = {wiki: _expected(wiki) for wiki in WIKIS.values()}
    assert [len(rows) for rows in expected.values()] == [7, 6, 7]
    uk = _expected("ukwiki")
    general, moderation = fake_discord.channels.general, fake_discord.channels.moderation
    async with feed_bot(fake_discord, core, None) as bot:
        for code in WIKIS:
            await command(fake_discord, f"!watch {code}")
        await command(fake_discord, "!watch uk", channel=moderation)
        await ingest_file(db_url, CAPTURE, catalog=CATALOG)
        poster = make_poster(pool, db_url, min_interval=0.2)
        await _run_until(poster, DiscordChannels(bot), fake_discord, {general: 20, moderation: len(uk)})

    messages = feed_messages(fake_discord, general)
    # Twenty changes of three feeds in two full messages (alone, each feed would have posted one).
    assert [len(m.embeds) for m in messages] == [10, 10]
    wikis_per_message = [sum(1 for rows in _by_wiki(m.embeds).values() if rows) for m in messages]
    assert all(count >= 2 for count in wikis_per_message)
    for wiki, embeds in _by_wiki(feed_embeds(fake_discord, general)).items():
        assert_posts_are(embeds, expected[wiki])  # each wiki's changes once, in order
    # Another channel's feed is never in them.
    assert_posts_are(feed_embeds(fake_discord, moderation), uk)
    feeds = await _feeds(pool)
    assert {wiki: feeds[wiki][0] for wiki in WIKIS.values()} == {w: len(r) for w, r in expected.items()}
    assert all(pending is None and nonce is None for _, _, pending, nonce in feeds.values())


async def test_a_restart_after_a_shared_message_was_accepted_posts_nothing_twice(
    fake_discord: FakeDiscord, core: CommandCore, pool: AsyncConnectionPool, db_url: str
) -> None:
    expected = {wiki: _expected(wiki) for wiki in WIKIS.values()}
    general = fake_discord.channels.general
    async with feed_bot(fake_discord, core, None) as bot:
        for code in WIKIS:
            await command(fake_discord, f"!watch {code}")
        await ingest_file(db_url, CAPTURE, catalog=CATALOG)
        first = make_poster(pool, db_url, min_interval=0.2)
        with pytest.raises(BaseExceptionGroup) as ended:
            await asyncio.wait_for(first.run(CrashAfterPosting(DiscordChannels(bot), after=1)), timeout=30)
        assert ended.group_contains(Crash)
        # Accepted, and written down as pending for each feed it carries, under one nonce.
        assert len(feed_embeds(fake_discord, general)) == 10
        pending = [nonce for _, _, to, nonce in (await _feeds(pool)).values() if to is not None]
        assert len(pending) >= 2
        assert len(set(pending)) == 1

        second = make_poster(pool, db_url, min_interval=0.2)
        await _run_until(second, DiscordChannels(bot), fake_discord, {general: 20})

    for wiki, embeds in _by_wiki(feed_embeds(fake_discord, general)).items():
        assert_posts_are(embeds, expected[wiki])
    nonces = [a.nonce for a in feed_attempts(fake_discord, general)]
    # The shared message was sent again with its nonce after the restart (before or after a feed it did
    # not carry posted); Discord kept the one it had.
    assert nonces[0] == pending[0]
    assert Counter(nonces)[pending[0]] == 2
    assert len(feed_messages(fake_discord, general)) == len(set(nonces)) == len(nonces) - 1
