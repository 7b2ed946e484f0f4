"""Live feeds end to end: `!watch` through the real discord.py bot and the fake Discord, a capture ingested
by the real ingester (which notifies), and the poster posting from PostgreSQL.

The changes a feed should post are computed here with plain Python over the capture's JSON lines, not
with the feed's own filter code.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from bot.client import WikiBot
from bot.commands import CommandCore
from bot.feeds.discord_channels import DiscordChannels
from bot.feeds.plan import NONCE_LENGTH
from bot.feeds.poster import FeedPoster
from bot.messages import Message as Post
from bot.metrics import BotMetrics
from tests.bot_fixtures import CATALOG, pool
from tests.fakediscord import (
    Channel,
    FakeDiscord,
    Message,
    PostAttempt,
    pointed_at,
    pytest_plugin,
    running,
)
from tests.replays import ingest_file
from tests.test_bot_discord import NOW, SETTINGS

fake_discord = pytest_plugin.fake_discord
__all__ = ["fake_discord", "pool"]  # fixtures used by name

CAPTURE = Path(__file__).parent / "data" / "2021-08-27_all-wikis_1950.jsonl"
MIN_INTERVAL = 2.0
# Scheduling on a loaded machine; the fake records when each request arrived, not when it was sent.
SLACK = 0.15


def capture_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CAPTURE.read_text(encoding="utf-8").splitlines() if line.strip()]


def size_of(row: dict[str, Any]) -> int | None:
    length = row.get("length") or {}
    if row["type"] not in ("edit", "new") or length.get("new") is None:
        return None
    return int(length["new"]) - int(length.get("old") or 0)


def expected_rows(keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The capture's rows a feed posts, in the order they arrive (the capture's order)."""
    return [row for row in capture_rows() if keep(row)]


def is_feed_nonce(nonce: object) -> bool:
    # A feed's nonce is 25 hex digits (`bot.feeds.plan.nonce`); discord.py gives replies a random integer.
    return isinstance(nonce, str) and len(nonce) == NONCE_LENGTH and not nonce.isdigit()


def feed_messages(fake: FakeDiscord, channel: Channel) -> list[Message]:
    """The bot's feed posts in `channel`."""
    return [m for m in fake.bot_messages(channel) if is_feed_nonce(m.nonce)]


def feed_attempts(fake: FakeDiscord, channel: Channel | None = None) -> list[PostAttempt]:
    return [a for a in fake.post_attempts(channel) if is_feed_nonce(a.nonce)]


def feed_embeds(fake: FakeDiscord, channel: Channel) -> list[dict[str, Any]]:
    return [embed for message in feed_messages(fake, channel) for embed in message.embeds]


async def wait_for_embeds(fake: FakeDiscord, channel: Channel, count: int, timeout: float = 60) -> None:
    await fake.state.changes.wait_for(
        lambda: len(feed_embeds(fake, channel)) >= count or None,
        timeout=timeout,
        what=f"{count} feed embeds in #{channel.name}",
    )


def assert_posts_are(embeds: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Each embed shows its row: title linked to the diff, user, signed size, time."""
    assert [e["title"] for e in embeds] == [row["title"] for row in rows]
    for embed, row in zip(embeds, rows, strict=True):
        if row["type"] == "edit":
            revision = row["revision"]
            assert embed["url"] == (
                f"https://{row['server_name']}/w/index.php?diff={revision['new']}&oldid={revision['old']}"
            )
        assert f"Special:Contributions/{row['user'].replace(' ', '_')})" in unquote(embed["description"])
        size = size_of(row)
        if size is not None:
            sign = f"+{size:,}" if size > 0 else f"{size:,}".replace("-", "−") if size < 0 else "±0"
            assert f"**{sign}**" in embed["description"]
        assert embed["footer"]["text"].endswith(" UTC")


def make_poster(pool: AsyncConnectionPool, db_url: str, *, listen: bool = True, **options: Any) -> FeedPoster:
    return FeedPoster(
        pool,
        CATALOG,
        listen=(lambda: psycopg.AsyncConnection.connect(db_url, autocommit=True)) if listen else None,
        poll_interval=1.0,
        retry_after_failure=0.5,
        **({"min_interval": MIN_INTERVAL} | options),
    )


@pytest.fixture
def core(pool: AsyncConnectionPool) -> CommandCore:
    return CommandCore(database=pool, catalog=CATALOG, prefix="!", clock=lambda: NOW)


@asynccontextmanager
async def feed_bot(fake: FakeDiscord, core: CommandCore, poster: FeedPoster | None) -> AsyncIterator[WikiBot]:
    bot = WikiBot(core, SETTINGS, cooldown=None, guild_ready_timeout=0.05, feeds=poster)
    async with running(bot, fake) as client:
        yield client
    assert fake.internal_errors == []


async def command(fake: FakeDiscord, text: str, *, channel: Channel | None = None, author: Any = None) -> str:
    channel = channel or fake.channels.general
    sent = await fake.send_user_message(text, author=author or fake.users.owner, channel=channel)
    [reply] = await fake.wait_for_bot_messages(channel, after=sent, timeout=10)
    return reply.content


def assert_paced(fake: FakeDiscord, channel: Channel) -> None:
    """Feed posts are sent at least MIN_INTERVAL apart (a post sent again by discord.py after a 429 counts
    from its first attempt), and hold at most ten embeds each."""
    first_attempts: dict[object, float] = {}
    for attempt in feed_attempts(fake, channel):
        first_attempts.setdefault(attempt.nonce, attempt.at)
    sent = sorted(first_attempts.values())
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert all(gap >= MIN_INTERVAL - SLACK for gap in gaps), gaps
    assert all(len(m.embeds) <= 10 for m in feed_messages(fake, channel))


async def test_a_feed_posts_exactly_its_matching_changes_in_order_batched_and_paced(
    fake_discord: FakeDiscord, core: CommandCore, pool: AsyncConnectionPool, db_url: str
) -> None:
    expected = expected_rows(
        lambda r: (
            r["wiki"] == "enwiki"
            and r["type"] in ("edit", "new")
            and r["namespace"] == 0
            and not r["bot"]
            and not r.get("minor")
            and (size := size_of(r)) is not None
            and abs(size) >= 50
        )
    )
    assert len(expected) == 23  # three messages: 10, 10 and 3
    general = fake_discord.channels.general
    registry = CollectorRegistry()
    async with feed_bot(fake_discord, core, make_poster(pool, db_url, metrics=BotMetrics(registry))):
        reply = await command(fake_discord, "!watch en type=edit,new ns=0 minor=no min=50")
        assert reply.startswith("Feed #1: changes on en.wikipedia.org will be posted in this channel")
        await ingest_file(db_url, CAPTURE, catalog=CATALOG)
        await wait_for_embeds(fake_discord, general, len(expected))
        await asyncio.sleep(0.5)  # anything extra would show now
        embeds = feed_embeds(fake_discord, general)
        assert_posts_are(embeds, expected)
        assert [len(m.embeds) for m in feed_messages(fake_discord, general)] == [10, 10, 3]
        assert_paced(fake_discord, general)
        watches = await command(fake_discord, "!watches")
    assert "#1 · en.wikipedia.org → <#" in watches
    assert "type=edit,new ns=0 minor=no min=50" in watches
    assert "live (23 posted" in watches
    assert registry.get_sample_value("teston_bot_feed_posts_total", {"outcome": "ok"}) == 3
    assert registry.get_sample_value("teston_bot_feed_backlog") == 0


async def test_a_429_is_waited_out_for_its_retry_after_and_polling_finds_changes(
    fake_discord: FakeDiscord, core: CommandCore, pool: AsyncConnectionPool, db_url: str
) -> None:
    expected = expected_rows(
        lambda r: r["wiki"] == "dewiki" and not r["bot"] and r["type"] in ("edit", "new", "log")
    )
    general = fake_discord.channels.general
    # Without LISTEN: the poster finds the new changes by polling.
    async with feed_bot(fake_discord, core, make_poster(pool, db_url, listen=False)):
        await command(fake_discord, "!watch de")
        fake_discord.rate_limit_next_post(general, retry_after=1.5)
        await ingest_file(db_url, CAPTURE, catalog=CATALOG)
        await wait_for_embeds(fake_discord, general, len(expected))
        await asyncio.sleep(0.5)
    assert_posts_are(feed_embeds(fake_discord, general), expected)
    attempts = feed_attempts(fake_discord, general)
    assert attempts[0].status == 429
    # The same message again, no sooner than Discord asked.
    assert attempts[1].nonce == attempts[0].nonce
    assert attempts[1].status == 200
    assert attempts[1].at - attempts[0].at >= 1.5 - SLACK
    assert_paced(fake_discord, general)


async def test_a_busy_channel_keeps_within_discords_window_and_is_never_answered_429(
    core: CommandCore, pool: AsyncConnectionPool, db_url: str
) -> None:
    expected = expected_rows(
        lambda r: r["wiki"] == "frwiki" and not r["bot"] and r["type"] in ("edit", "new", "log")
    )
    assert len(expected) > 20  # at least three messages
    # Two posts per 1.5 s (Discord's is five per five seconds), enforced by the fake and kept by the poster.
    async with FakeDiscord.start(channel_rate_limit=(2, 1.5)) as fake:
        general = fake.channels.general
        with pointed_at(fake):
            poster = make_poster(pool, db_url, min_interval=0.0, channel_limit=(2, 1.5))
            async with feed_bot(fake, core, poster):
                await command(fake, "!watch fr")
                await asyncio.sleep(1.6)  # the window holding the command's reply ends
                await ingest_file(db_url, CAPTURE, catalog=CATALOG)
                await wait_for_embeds(fake, general, len(expected))
                await asyncio.sleep(0.5)
        assert_posts_are(feed_embeds(fake, general), expected)
        limits = fake.rate_limits
        assert limits is not None
        assert (limits.limited, limits.ignored) == (0, 0)
        accepted = [a.at for a in feed_attempts(fake, general) if a.status == 200]
        assert len(accepted) == len(feed_messages(fake, general)) >= 3
        assert all(later - earlier >= 1.5 for earlier, later in zip(accepted, accepted[2:], strict=False))


class Crash(BaseException):
    """The process dies: raised past every handler, like a kill between two statements."""


class CrashAfterPosting:
    """Posts through discord.py, then dies right after Discord accepted post number `after`."""

    def __init__(self, channels: DiscordChannels, after: int) -> None:
        self.channels = channels
        self.after = after
        self.posted = 0

    async def post(self, channel_id: int, message: Post, *, nonce: str) -> None:
        await self.channels.post(channel_id, message, nonce=nonce)
        self.posted += 1
        if self.posted == self.after:
            raise Crash


async def test_a_restart_mid_feed_posts_nothing_twice_and_misses_nothing(
    fake_discord: FakeDiscord, core: CommandCore, pool: AsyncConnectionPool, db_url: str
) -> None:
    expected = expected_rows(
        lambda r: r["wiki"] == "frwiki" and not r["bot"] and r["type"] in ("edit", "new", "log")
    )
    assert len(expected) > 20
    general = fake_discord.channels.general
    async with feed_bot(fake_discord, core, None) as bot:
        await command(fake_discord, "!watch fr")
        await ingest_file(db_url, CAPTURE, catalog=CATALOG)
        first = make_poster(pool, db_url, min_interval=0.2)
        with pytest.raises(BaseExceptionGroup) as ended:
            await asyncio.wait_for(first.run(CrashAfterPosting(DiscordChannels(bot), after=2)), timeout=30)
        assert ended.group_contains(Crash)
        assert len(feed_embeds(fake_discord, general)) == 20  # accepted, cursor not moved yet

        second = make_poster(pool, db_url, min_interval=0.2)
        running_again = asyncio.create_task(second.run(DiscordChannels(bot)))
        try:
            await wait_for_embeds(fake_discord, general, len(expected))
            await asyncio.sleep(0.5)
        finally:
            running_again.cancel()
            await asyncio.gather(running_again, return_exceptions=True)
    assert_posts_are(feed_embeds(fake_discord, general), expected)
    nonces = [a.nonce for a in feed_attempts(fake_discord, general)]
    # The second message was sent again after the restart, and Discord answered with the one it had.
    assert nonces[1] == nonces[2]
    assert len(feed_messages(fake_discord, general)) == len(set(nonces))


async def test_a_feed_far_behind_posts_one_line_then_the_newest(
    fake_discord: FakeDiscord, core: CommandCore, pool: AsyncConnectionPool, db_url: str
) -> None:
    expected = expected_rows(lambda r: r["wiki"] == "commonswiki" and r["type"] in ("edit", "new", "log"))
    assert len(expected) > 110
    general = fake_discord.channels.general
    async with feed_bot(fake_discord, core, None) as bot:
        await command(fake_discord, "!watch commons bots")
        await ingest_file(db_url, CAPTURE, catalog=CATALOG)
        poster = make_poster(pool, db_url, min_interval=0.2)
        task = asyncio.create_task(poster.run(DiscordChannels(bot)))
        try:
            await wait_for_embeds(fake_discord, general, 10)
            await asyncio.sleep(0.5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    first, second = feed_messages(fake_discord, general)
    assert first.content.startswith(f"Skipped {len(expected) - 10} changes on commons.wikimedia.org")
    assert "!recent commons" in first.content
    assert first.embeds == []
    assert_posts_are(second.embeds, expected[-10:])


async def test_a_deleted_channel_or_a_lost_permission_pauses_the_feed(
    fake_discord: FakeDiscord, core: CommandCore, pool: AsyncConnectionPool, db_url: str
) -> None:
    moderation = fake_discord.channels.moderation
    async with feed_bot(fake_discord, core, make_poster(pool, db_url)):
        await command(fake_discord, "!watch de", channel=moderation)
        await command(fake_discord, "!watch fr")
        fake_discord.delete_channel(moderation)
        fake_discord.deny_posting(fake_discord.channels.general)
        await ingest_file(db_url, CAPTURE, catalog=CATALOG)

        async def both_paused() -> bool:
            async with pool.connection() as conn:
                cursor = await conn.execute("SELECT count(*) FROM feeds WHERE paused_reason IS NOT NULL")
                row = await cursor.fetchone()
            return row is not None and row[0] == 2

        async with asyncio.timeout(30):
            while not await both_paused():
                await asyncio.sleep(0.1)
        assert {a.status for a in feed_attempts(fake_discord)} == {403, 404}
        fake_discord.world.muted_channel_ids.clear()
        watches = await command(fake_discord, "!watches")
    assert "#1 · de.wikipedia.org" in watches
    assert "paused since" in watches
    assert "the channel was deleted" in watches
    assert "#2 · fr.wikipedia.org" in watches
    assert "TestON may not post in the channel" in watches
    assert feed_messages(fake_discord, moderation) == []


async def test_watch_needs_manage_channels_and_every_mistake_gets_one_usage_line(
    fake_discord: FakeDiscord, core: CommandCore
) -> None:
    usage = "Usage: !watch <lang> [type=edit|new|log|categorize]"
    async with feed_bot(fake_discord, core, None):
        refused = await command(fake_discord, "!watch en", author=fake_discord.users.alice)
        assert refused.startswith("Only members with the Manage Channels permission")
        assert usage in refused
        for text, problem in [
            ("!watch", "Which wiki?"),
            ("!watch type=edit", "Give the language first"),
            ("!watch xx-nowiki", "Unknown language"),
            ("!watch en type=move", "Unknown change type"),
            ("!watch en frobnicate", "Unknown filter"),
            ("!watch en min=-5", "min= takes a number of bytes"),
        ]:
            reply = await command(fake_discord, text)
            assert reply.startswith(problem), reply
            assert usage in reply, reply
            assert "\n" not in reply, reply
        for text, problem in [
            ("!unwatch", "Which feed?"),
            ("!unwatch abc", "'abc' is not a feed number"),
            ("!unwatch 1 2", "Unexpected extra argument"),
            ("!unwatch 99", "This server has no feed 99"),
        ]:
            reply = await command(fake_discord, text)
            assert reply.startswith(problem), reply
            assert "Usage: !unwatch <id>" in reply, reply
            assert "\n" not in reply, reply
        slash = await fake_discord.invoke_slash(
            "watch", {"language": "en", "filters": "ns=zero"}, user=fake_discord.users.owner
        )
        assert slash.responses[0].content is not None
        assert "'zero' is not a namespace number" in slash.responses[0].content
        assert "Usage: /watch language:<code>" in slash.responses[0].content
