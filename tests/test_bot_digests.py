"""Charts and daily digests through the fake Discord driving TestON's real discord.py bot.

Two posters with their own connection pools and their own discord.py clients stand for two bot
processes: the database claim makes each day's digest one post.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import discord
import psycopg
import pytest
from PIL import Image
from psycopg_pool import AsyncConnectionPool

from analytics import rollup
from bot import digest_store
from bot.client import ShardedWikiBot, WikiBot, wiki_bot
from bot.commands import CommandCore
from bot.digests import DigestPoster, digest_nonce, due_days
from bot.shards import ShardPlan, shard_of
from teston.core.settings import DiscordSettings
from tests.bot_fixtures import CATALOG
from tests.fakediscord import FakeDiscord, Message, pytest_plugin, running
from tests.replays import ingest_file

fake_discord = pytest_plugin.fake_discord
__all__ = ["fake_discord"]

CAPTURE = Path(__file__).parent / "data" / "2021-08-27_all-wikis_1950.jsonl"
DAY = date(2021, 8, 27)
SETTINGS = DiscordSettings(_env_file=None, DISCORD_TOKEN="test-token")  # type: ignore[call-arg]


def capture_count(wiki: str) -> int:
    rows = [json.loads(line) for line in CAPTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sum(1 for row in rows if row["wiki"] == wiki)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def rolled_up(db_url: str, tmp_path: Path) -> str:
    await ingest_file(db_url, CAPTURE, catalog=CATALOG)
    with psycopg.connect(db_url) as conn:
        rollup.rollup_day(conn, tmp_path / "exports", DAY)
    return db_url


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2021, 8, 27, 14, 0, tzinfo=UTC))


@pytest.fixture
async def make_core(rolled_up: str, clock: Clock) -> AsyncIterator[Callable[[], Any]]:
    pools: list[AsyncConnectionPool] = []

    async def make() -> CommandCore:
        pool = AsyncConnectionPool(rolled_up, min_size=1, max_size=3, open=False, timeout=10)
        await pool.open()
        pools.append(pool)
        return CommandCore(database=pool, catalog=CATALOG, prefix="!", clock=clock, query_timeout=30)

    yield make
    for pool in pools:
        await pool.close()


def make_bot(core: CommandCore, **options: Any) -> WikiBot:
    options.setdefault("digest_interval", None)
    return WikiBot(core, SETTINGS, cooldown=None, guild_ready_timeout=0.05, **options)


async def ask(fake: FakeDiscord, text: str, *, author: Any = None, count: int = 1) -> list[Message]:
    sent = await fake.send_user_message(text, author=author or fake.users.owner)
    return await fake.wait_for_bot_messages(fake.channels.general, after=sent, count=count, timeout=10)


def png_size(fake: FakeDiscord, message: Message) -> tuple[int, int]:
    [attachment] = message.attachments
    assert attachment["filename"].endswith(".png")
    with Image.open(io.BytesIO(fake.attachment_bytes(attachment))) as image:
        assert image.format == "PNG"
        return image.size


async def test_chart_is_sent_as_a_png_file(fake_discord: FakeDiscord, make_core: Any) -> None:
    async with running(make_bot(await make_core()), fake_discord):
        [reply] = await ask(fake_discord, "!chart en 2021-08-27")
        slash = await fake_discord.invoke_slash(
            "chart", {"languages": "en,de", "period": "2021-08-20..2021-08-27"}, user=fake_discord.users.alice
        )
        [mistake] = await ask(fake_discord, "!chart en,xx")
    assert reply.content == (
        f"Changes on en.wikipedia.org on 2021-08-27, per UTC hour: {capture_count('enwiki')} in all."
    )
    assert reply.attachments[0]["filename"] == "teston-enwiki-2021-08-27.png"
    assert png_size(fake_discord, reply) == (1000, 500)
    answer = slash.message
    assert answer is not None
    assert not answer.ephemeral
    total = capture_count("enwiki") + capture_count("dewiki")
    assert answer.content.endswith(f"from 2021-08-20 to 2021-08-27, per UTC day: {total:,} in all.")
    assert png_size(fake_discord, answer) == (1000, 500)
    assert mistake.content.startswith("Unknown language 'xx'.")
    assert mistake.content.endswith(" Usage: !chart <lang>[,<lang>…] [<from>..<to>|<N>d|<yyyy-mm-dd>]")
    assert "\n" not in mistake.content


async def test_digest_commands_and_their_mistakes(fake_discord: FakeDiscord, make_core: Any) -> None:
    async with running(make_bot(await make_core()), fake_discord):
        [refused] = await ask(fake_discord, "!digest en", author=fake_discord.users.alice)
        [created] = await ask(fake_discord, "!digest en")
        [moved] = await ask(fake_discord, "!digest en 06:45")
        [listed] = await ask(fake_discord, "!digests", author=fake_discord.users.alice)
        [unknown] = await ask(fake_discord, "!digest xx")
        [missing] = await ask(fake_discord, "!undigest 99")
        [bad_time] = await ask(fake_discord, "!digest en 24:00")
        slash = await fake_discord.invoke_slash(
            "digest", {"language": "de", "time": "07:00"}, user=fake_discord.users.owner
        )
        slash_refused = await fake_discord.invoke_slash(
            "digest", {"language": "fr"}, user=fake_discord.users.alice
        )
        [stopped] = await ask(fake_discord, "!undigest en")
        listing = await fake_discord.invoke_slash("digests", user=fake_discord.users.owner)
    assert refused.content == (
        "Only members with the Manage Channels permission can change digests. Usage: !digest <lang> [HH:MM]"
    )
    assert created.content.startswith(
        "Digest #1: this channel will post yesterday's figures and chart for 'en'"
    )
    assert "every day at 00:30 UTC" in created.content
    assert moved.content.startswith("Digest #1: this channel now posts")
    assert "06:45 UTC" in moved.content
    general = fake_discord.channels.general.id
    assert listed.content == f"Daily digests:\n#1: 'en' in <#{general}> daily at 06:45 UTC, not posted yet"
    assert unknown.content.startswith("Unknown language 'xx'.")
    assert unknown.content.endswith("[HH:MM]")
    assert missing.content == "There is no digest number 99. Usage: !undigest <id|lang>"
    assert bad_time.content == "'24:00' is not a time of day. Usage: !digest <lang> [HH:MM]"
    # Identity numbers may skip (moving a digest used one up); the listing names the digest's own.
    assert slash.message is not None
    assert slash.message.content.startswith("Digest #")
    [refusal] = slash_refused.responses
    assert refusal.ephemeral
    assert (refusal.content or "").endswith("Usage: /digest language:<code> [time]")
    assert stopped.content.startswith("Stopped digest #1: 'en'")
    assert listing.message is not None
    assert listing.message.ephemeral
    [only] = listing.message.content.splitlines()[1:]
    assert only.startswith(slash.message.content.split(":")[0].removeprefix("Digest ") + ": 'de' in <#")


def test_due_days() -> None:
    created = datetime(2021, 8, 27, 14, 0, tzinfo=UTC)
    at = time(0, 30)
    assert due_days(datetime(2021, 8, 28, 0, 29, tzinfo=UTC), at, created) == []
    assert due_days(datetime(2021, 8, 28, 0, 30, tzinfo=UTC), at, created) == [DAY]
    assert due_days(datetime(2021, 8, 30, 9, 0, tzinfo=UTC), at, created) == [
        DAY,
        date(2021, 8, 28),
        date(2021, 8, 29),
    ]
    # A digest made after that day's post time starts with the next day; catching up stops at 7 days.
    assert due_days(datetime(2021, 8, 29, 1, 0, tzinfo=UTC), at, datetime(2021, 8, 28, 1, 0, tzinfo=UTC)) == [
        date(2021, 8, 28)
    ]
    assert len(due_days(datetime(2021, 9, 30, 1, 0, tzinfo=UTC), at, created)) == 7


async def test_a_digest_posts_once_per_day_across_two_bot_processes(
    fake_discord: FakeDiscord, make_core: Any, clock: Clock, rolled_up: str
) -> None:
    core_a, core_b = await make_core(), await make_core()
    other_process = discord.Client(intents=discord.Intents.default())
    async with running(make_bot(core_a), fake_discord) as bot:
        await other_process.login(fake_discord.token)
        try:
            posters = [
                DigestPoster(core_a, bot, clock=clock, claimer="a"),
                DigestPoster(core_b, other_process, clock=clock, claimer="b"),
            ]

            async def both() -> list[int]:
                return list(await asyncio.gather(*(poster.post_due() for poster in posters)))

            [created] = await ask(fake_discord, "!digest en")
            assert created.content.startswith("Digest #1:")
            clock.now = datetime(2021, 8, 28, 0, 20, tzinfo=UTC)
            assert await both() == [0, 0]
            # Both processes were down at 00:30; the day is posted late, once.
            clock.now = datetime(2021, 8, 28, 9, 0, tzinfo=UTC)
            assert sorted(await both()) == [0, 1]
            assert await both() == [0, 0]
            clock.now = datetime(2021, 8, 28, 23, 0, tzinfo=UTC)
            assert await both() == [0, 0]
        finally:
            await other_process.close()
    posts = [
        m for m in fake_discord.bot_messages(fake_discord.channels.general) if "Daily digest" in m.content
    ]
    [post] = posts
    assert post.content.splitlines()[:2] == [
        "**Daily digest** of 'en' for 2021-08-27 (UTC)",
        f"On 2021-08-27, there were {capture_count('enwiki')} changes for language 'en'.",
    ]
    assert post.embeds[0]["title"] == "en.wikipedia.org on 2021-08-27"
    assert png_size(fake_discord, post) == (1000, 500)
    with psycopg.connect(rolled_up) as conn:
        rows = conn.execute("SELECT day, message_id, posted_at IS NOT NULL FROM digest_posts").fetchall()
    assert rows == [(DAY, post.id, True)]


async def test_the_bot_process_runs_the_digest_loop(
    fake_discord: FakeDiscord, make_core: Any, clock: Clock
) -> None:
    async with running(make_bot(await make_core(), digest_interval=0.2), fake_discord):
        [created] = await ask(fake_discord, "!digest wikidata 08:00")
        assert created.content.startswith("Digest #1:")
        clock.now = datetime(2021, 8, 28, 8, 0, tzinfo=UTC)
        [post] = await fake_discord.wait_for_bot_messages(
            fake_discord.channels.general, after=created, count=1, timeout=20
        )
        await asyncio.sleep(1)  # several more rounds of the loop: nothing more is posted
        [listed] = await ask(fake_discord, "!digests")
    assert post.content.startswith("**Daily digest** of 'wikidata' for 2021-08-27 (UTC)")
    assert [m.id for m in fake_discord.bot_messages() if m.id > post.id] == [listed.id]
    assert listed.content.endswith("daily at 08:00 UTC, last posted for 2021-08-27")


async def test_a_sharded_process_posts_only_the_digests_of_its_guilds(
    fake_discord: FakeDiscord, make_core: Any, clock: Clock, rolled_up: str
) -> None:
    home_guild = fake_discord.guild.id
    home_shard = shard_of(home_guild, 2)
    # A guild on the other of two shards.
    other_guild = ((home_guild >> 22) + 1) << 22
    other_channel = fake_discord.add_guild(other_guild, "other")
    assert shard_of(other_guild, 2) == 1 - home_shard
    core_a, core_b = await make_core(), await make_core()
    async with running(make_bot(core_a), fake_discord) as bot:
        async with core_a.database.connection() as conn:
            for guild_id, channel_id in (
                (home_guild, fake_discord.channels.general.id),
                (other_guild, other_channel.id),
            ):
                await digest_store.set_digest(
                    conn,
                    guild_id=guild_id,
                    channel_id=channel_id,
                    wiki="enwiki",
                    post_at=time(0, 30),
                    created_by=None,
                    created_at=datetime(2021, 8, 27, 12, 0, tzinfo=UTC),
                )
        # One client stands for both processes: which digests a poster takes is decided by its shards.
        posters = {
            shard: DigestPoster(
                core, bot, clock=clock, claimer=f"shard {shard}", owns=ShardPlan(2, (shard,)).owns
            )
            for shard, core in ((home_shard, core_a), (1 - home_shard, core_b))
        }
        clock.now = datetime(2021, 8, 28, 9, 0, tzinfo=UTC)
        # The other guild's poster goes first: without shards it would take both digests.
        assert await posters[1 - home_shard].post_due() == 1
        assert await posters[home_shard].post_due() == 1
        assert [await poster.post_due() for poster in posters.values()] == [0, 0]
    with psycopg.connect(rolled_up) as conn:
        claims = conn.execute(
            "SELECT d.guild_id, p.claimed_by FROM digest_posts p JOIN digests d ON d.id = p.digest_id"
            " ORDER BY d.guild_id"
        ).fetchall()
    assert sorted(claims) == sorted(
        [(home_guild, f"shard {home_shard}"), (other_guild, f"shard {1 - home_shard}")]
    )
    for channel in (fake_discord.channels.general, other_channel):
        [post] = [m for m in fake_discord.bot_messages(channel) if "Daily digest" in m.content]
        assert post.content.startswith("**Daily digest** of 'en' for 2021-08-27 (UTC)")


def test_a_sharded_bot_hands_its_shards_to_its_digest_poster() -> None:
    sharded = DiscordSettings(_env_file=None, DISCORD_TOKEN="t", SHARD_COUNT=4, SHARD_IDS="2,3")  # type: ignore[call-arg]
    core = CommandCore(database=None, catalog=CATALOG, prefix="!")  # type: ignore[arg-type]
    bot = wiki_bot(core, sharded, digest_interval=60.0)
    assert isinstance(bot, ShardedWikiBot)
    assert (bot.shard_count, bot.shard_ids) == (4, (2, 3))
    assert bot.digest_poster is not None
    owned = [bot.digest_poster.owns(((1 << 30) + n) << 22) for n in range(4)]
    assert owned == [False, False, True, True]
    assert not isinstance(wiki_bot(core, SETTINGS, digest_interval=60.0), ShardedWikiBot)


def test_digest_nonces_are_stable_distinct_and_short() -> None:
    nonces = {digest_nonce(7, DAY, index) for index in range(3)} | {digest_nonce(8, DAY, 0)}
    assert len(nonces) == 4
    assert digest_nonce(7, DAY, 1) == digest_nonce(7, DAY, 1) == "d7-20210827-1"
    huge = digest_nonce(2**62, DAY, 12)
    assert len(huge) <= 25
    assert huge != digest_nonce(2**62, DAY, 13)


@contextlib.asynccontextmanager
async def digest_of_en(fake: FakeDiscord, make_core: Any, clock: Clock) -> AsyncIterator[DigestPoster]:
    """A running bot with `!digest en` set in the general channel, and a poster ("a") beside it."""
    core = await make_core()
    async with running(make_bot(core), fake) as bot:
        await ask(fake, "!digest en")
        yield DigestPoster(core, bot, clock=clock, claimer="a")


async def test_a_post_sent_again_is_not_posted_twice(
    fake_discord: FakeDiscord, make_core: Any, clock: Clock, rolled_up: str
) -> None:
    async with digest_of_en(fake_discord, make_core, clock) as poster:
        clock.now = datetime(2021, 8, 28, 9, 0, tzinfo=UTC)
        assert await poster.post_due() == 1
        # As if the process had failed to record the post Discord accepted: its next round sends it
        # again, with the same nonce, and Discord answers with the message it already has.
        with psycopg.connect(rolled_up) as conn:
            conn.execute("UPDATE digest_posts SET posted_at = NULL, message_id = NULL")
        assert await poster.post_due() == 1
        # Another process cannot take the unfinished claim before its lease is over.
        other = DigestPoster(poster.core, poster.client, clock=clock, claimer="b")
        with psycopg.connect(rolled_up) as conn:
            conn.execute("UPDATE digest_posts SET posted_at = NULL")
        assert await other.post_due() == 0
    posts = [
        m for m in fake_discord.bot_messages(fake_discord.channels.general) if "Daily digest" in m.content
    ]
    assert [m.nonce for m in posts] == ["d1-20210827-0"]
    with psycopg.connect(rolled_up) as conn:
        assert conn.execute("SELECT message_id, claimed_by FROM digest_posts").fetchall() == [
            (posts[0].id, "a")
        ]


async def test_a_digest_whose_channel_is_closed_is_paused_until_set_again(
    fake_discord: FakeDiscord, make_core: Any, clock: Clock, rolled_up: str
) -> None:
    async with digest_of_en(fake_discord, make_core, clock) as poster:
        fake_discord.deny_posting(fake_discord.channels.general)
        clock.now = datetime(2021, 8, 28, 9, 0, tzinfo=UTC)
        assert await poster.post_due() == 0
        attempts = len(fake_discord.post_attempts())
        assert await poster.post_due() == 0
        # Paused: the next round does not try again.
        assert len(fake_discord.post_attempts()) == attempts
        with psycopg.connect(rolled_up) as conn:
            [(reason,)] = conn.execute("SELECT paused_reason FROM digests").fetchall()
        assert reason.startswith("TestON may not post in the channel")
        fake_discord.world.muted_channel_ids.discard(fake_discord.channels.general.id)
        [listed] = await ask(fake_discord, "!digests")
        assert "; paused since " in listed.content
        assert listed.content.endswith(reason)
        [resumed] = await ask(fake_discord, "!digest en")
        assert await poster.post_due() == 1
    assert "paused" not in resumed.content
    posts = [
        m for m in fake_discord.bot_messages(fake_discord.channels.general) if "**Daily digest**" in m.content
    ]
    assert len(posts) == 1
    with psycopg.connect(rolled_up) as conn:
        assert conn.execute("SELECT paused_reason, paused_at FROM digests").fetchall() == [(None, None)]
