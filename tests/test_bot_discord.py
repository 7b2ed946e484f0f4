"""End to end: TestON's real discord.py bot against the in-repo fake Discord, over a real PostgreSQL.

`!recent` is checked against the recorded 2021-08-27 capture, ingested by the real ingestion code;
the expected rows come from a plain pass over the capture's JSON lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import aiohttp
import discord
import psycopg
import pytest
from discord.ext import commands
from discord.http import Route
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from analytics import bookkeeping, rollup
from bot.client import Backoff, WikiBot, is_transient, run_bot
from bot.cog import SlowDownNotices
from bot.commands import CommandCore
from bot.metrics import BotMetrics
from teston.cli import app
from teston.cli.wiring import discord_bot_service
from teston.core.runtime import run_components
from teston.core.settings import DiscordSettings, load_settings
from tests.bot_fixtures import CATALOG, insert_day_stats, insert_rollup, pool
from tests.fakediscord import FakeDiscord, InteractionResult, Message, pointed_at, pytest_plugin, running
from tests.replays import ingest_file

fake_discord = pytest_plugin.fake_discord
__all__ = ["fake_discord", "pool"]  # fixtures used by name

DATA = Path(__file__).parent / "data"
CAPTURE = DATA / "2021-08-27_all-wikis_1950.jsonl"
# The capture's day is "today" for these tests, so its date is valid and later ones are in the future.
NOW = datetime(2021, 8, 27, 14, 0, tzinfo=UTC)
SETTINGS = DiscordSettings(_env_file=None, DISCORD_TOKEN="test-token")  # type: ignore[call-arg]


def newest_capture_rows(wiki: str, *, bots: bool = False, categorize: bool = False) -> list[dict[str, Any]]:
    """The capture's changes of `wiki`, newest first, filtered as `!recent` filters by default."""
    rows = [json.loads(line) for line in CAPTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    chosen = [
        row
        for row in rows
        if row["wiki"] == wiki and (bots or not row["bot"]) and (categorize or row["type"] != "categorize")
    ]
    # Newest first; within a second by the wiki's rcid, and entries without one (some log events) last.
    return sorted(
        chosen,
        key=lambda row: (row["timestamp"], row.get("id") is not None, row.get("id") or 0),
        reverse=True,
    )


def links_of(line: str) -> list[str]:
    """The URLs of the markdown links in an entry, percent-decoded."""
    return [unquote(url) for url in re.findall(r"\]\((https://[^)\s]+)\)", line)]


def assert_entry_is(line: str, row: dict[str, Any]) -> None:
    """An entry of `!recent` shows this capture row: its time, page, user and diff."""
    moment = datetime.fromtimestamp(row["timestamp"], UTC)
    assert line.startswith(f"`{moment:%Y-%m-%d %H:%M:%S} UTC` · ["), line
    links = links_of(line)
    assert links[0] == unquote(row["meta"]["uri"]).replace(" ", "_"), line
    assert (
        links[1] == f"https://{row['server_name']}/wiki/Special:Contributions/{row['user'].replace(' ', '_')}"
    )
    if row["type"] == "edit":
        diff = f"https://{row['server_name']}/w/index.php?diff={row['revision']['new']}&oldid={row['revision']['old']}"
        assert links[-1] == diff, line
    assert (", bot" in line or " · bot" in line) == row["bot"], line


@pytest.fixture
async def core(pool: Any, db_url: str) -> CommandCore:
    await ingest_file(db_url, CAPTURE, catalog=CATALOG)
    return CommandCore(database=pool, catalog=CATALOG, prefix="!", clock=lambda: NOW)


def make_bot(core: CommandCore, *, cooldown: commands.Cooldown | None = None, **options: Any) -> WikiBot:
    # A short guild_ready_timeout: on_ready fires that long after the guild arrives.
    return WikiBot(core, SETTINGS, cooldown=cooldown, guild_ready_timeout=0.05, **options)


@pytest.fixture
async def bot(fake_discord: FakeDiscord, core: CommandCore) -> AsyncIterator[WikiBot]:
    async with running(make_bot(core), fake_discord) as client:
        yield client
    assert fake_discord.internal_errors == []


async def ask(fake: FakeDiscord, text: str, *, author: Any = None, count: int = 1) -> list[Message]:
    """Post `text` in #general and return the bot's next `count` messages."""
    sent = await fake.send_user_message(text, author=author or fake.users.alice)
    return await fake.wait_for_bot_messages(fake.channels.general, after=sent, count=count, timeout=5)


class HandledCommands:
    """The text commands a bot has finished handling with an error (a cooldown, an unknown command).

    discord.py dispatches `command_error` only after the cog's error handler has returned, so a message
    seen here has been processed and any reply to it already sent: "no reply" is then a fact, not a
    guess made after sleeping.
    """

    def __init__(self, bot: commands.Bot) -> None:
        self.errors: dict[int, commands.CommandError] = {}
        self._changed = asyncio.Event()
        bot.add_listener(self._on_command_error, "on_command_error")

    async def _on_command_error(self, ctx: commands.Context[Any], error: commands.CommandError) -> None:
        if ctx.interaction is None:
            self.errors[ctx.message.id] = error
            self._changed.set()

    async def wait_for(self, *messages: Message, timeout: float = 5.0) -> list[commands.CommandError]:
        """The error each message's command ended with, once all of them have been handled."""
        async with asyncio.timeout(timeout):
            while not all(message.id in self.errors for message in messages):
                self._changed.clear()
                await self._changed.wait()
        return [self.errors[message.id] for message in messages]


def embed_lines(messages: list[Message] | list[dict[str, Any]]) -> list[str]:
    embeds = [e for m in messages for e in (m.embeds if isinstance(m, Message) else [m])]
    return [line for embed in embeds for line in (embed.get("description") or "").splitlines()]


def answer_messages(result: InteractionResult) -> list[dict[str, Any]]:
    """What an interaction answered, as message bodies: the original response and any followups."""
    return [r.data for r in result.responses if r.content is not None or r.embeds]


# --- registration -----------------------------------------------------------------------------------


async def test_slash_commands_are_synced_with_language_autocomplete(
    fake_discord: FakeDiscord, bot: WikiBot
) -> None:
    names = sorted(c.name for c in fake_discord.registered_commands)
    assert names == [
        "chart",
        "digest",
        "digests",
        "help",
        "recent",
        "setlang",
        "stats",
        "top",
        "undigest",
        "unwatch",
        "watch",
        "watches",
    ]
    recent = fake_discord.registered_command("recent")
    assert [o["name"] for o in recent.options] == ["language", "count", "bots", "categorize"]
    assert recent.option("language")["autocomplete"] is True
    assert (recent.option("count")["min_value"], recent.option("count")["max_value"]) == (1, 100)
    stats = fake_discord.registered_command("stats")
    assert [(o["name"], o.get("required", False)) for o in stats.options] == [
        ("date", True),
        ("language", False),
    ]
    assert fake_discord.registered_command("setlang").option("language")["autocomplete"] is True


async def test_slash_commands_sync_to_the_configured_server(
    fake_discord: FakeDiscord, core: CommandCore
) -> None:
    settings = DiscordSettings(
        _env_file=None,  # type: ignore[call-arg]
        DISCORD_TOKEN="test-token",
        DISCORD_SYNC_GUILD_ID=fake_discord.guild.id,
    )
    client = WikiBot(core, settings, cooldown=None, guild_ready_timeout=0.05)
    async with running(client, fake_discord):
        guild_commands = [c for c in fake_discord.registered_commands if c.guild_id == fake_discord.guild.id]
    assert "stats" in {c.name for c in guild_commands}
    assert sorted(c.name for c in guild_commands) == sorted(c.name for c in fake_discord.registered_commands)


async def test_language_autocomplete_offers_wikis(fake_discord: FakeDiscord, bot: WikiBot) -> None:
    choices = await fake_discord.autocomplete(
        "stats",
        focused="language",
        value="zh-",
        options={"date": "2021-08-27"},
        user=fake_discord.users.alice,
    )
    assert [c["value"] for c in choices][:3] == ["zh-yue", "zh-min-nan", "zh-classical"]
    empty = await fake_discord.autocomplete(
        "recent", focused="language", value="", user=fake_discord.users.alice
    )
    assert len(empty) == 25


# --- !recent ---------------------------------------------------------------------------------------


async def test_prefix_recent_shows_the_five_newest_human_changes_of_the_capture(
    fake_discord: FakeDiscord, bot: WikiBot
) -> None:
    expected = newest_capture_rows("enwiki")[:5]

    [reply] = await ask(fake_discord, "!recent en 5")

    assert reply.content == (
        "The 5 newest changes on en.wikipedia.org, newest first (bot changes and category changes left out)."
    )
    lines = embed_lines([reply])
    assert len(lines) == 5
    for line, row in zip(lines, expected, strict=True):
        assert_entry_is(line, row)
    assert reply.allowed_mentions == {"parse": [], "replied_user": False}
    assert reply.message_reference is not None  # a reply to the command, without pinging its author
    assert reply.mention_ids == []


async def test_slash_recent_answers_the_same_as_prefix(fake_discord: FakeDiscord, bot: WikiBot) -> None:
    [prefix_reply] = await ask(fake_discord, "!recent en 5")

    result = await fake_discord.invoke_slash(
        "recent", {"language": "en", "count": 5}, user=fake_discord.users.alice, timeout=5
    )

    [answer] = answer_messages(result)
    assert answer["content"] == prefix_reply.content
    assert embed_lines(answer["embeds"]) == embed_lines([prefix_reply])
    assert not result.responses[0].ephemeral


async def test_recent_with_bots_includes_the_capture_bot_changes(
    fake_discord: FakeDiscord, bot: WikiBot
) -> None:
    expected = newest_capture_rows("wikidatawiki", bots=True)[:3]
    assert any(row["bot"] for row in newest_capture_rows("wikidatawiki", bots=True))

    result = await fake_discord.invoke_slash(
        "recent", {"language": "wikidata", "count": 3, "bots": True}, user=fake_discord.users.alice
    )

    lines = embed_lines(answer_messages(result)[0]["embeds"])
    assert len(lines) == 3
    for line, row in zip(lines, expected, strict=True):
        assert_entry_is(line, row)


async def test_a_hundred_changes_are_split_within_discord_limits(
    fake_discord: FakeDiscord, bot: WikiBot
) -> None:
    expected = newest_capture_rows("enwiki")[:100]
    sent = await fake_discord.send_user_message("!recent en 100", author=fake_discord.users.alice)

    def every_part() -> list[Message] | None:
        """The replies once every part has arrived: the parts hold 100 entries in all."""
        replies = [m for m in fake_discord.bot_messages(fake_discord.channels.general) if m.id > sent.id]
        return replies if len(embed_lines(replies)) >= 100 else None

    replies = await fake_discord.state.changes.wait_for(every_part, timeout=10, what="100 entries")

    assert len(replies) >= 2
    lines = embed_lines(replies)
    assert len(lines) == 100
    for line, row in zip(lines, expected, strict=True):
        assert_entry_is(line, row)
    for message in replies:
        assert len(message.content) <= 2000
        assert (
            sum(len(e.get("description") or "") + len(e.get("title") or "") for e in message.embeds) <= 6000
        )


async def test_recent_over_the_maximum_is_lowered_and_says_so(
    fake_discord: FakeDiscord, bot: WikiBot
) -> None:
    sent = await fake_discord.send_user_message("!recent 500 en", author=fake_discord.users.alice)
    [first] = await fake_discord.wait_for_bot_messages(fake_discord.channels.general, after=sent, timeout=5)
    assert first.content.endswith("(100 is the most !recent shows.)")


# --- !stats ----------------------------------------------------------------------------------------


def roll_up_capture_day(db_url: str, export_dir: Path) -> None:
    with psycopg.connect(db_url) as conn:
        for day in bookkeeping.raw_days(conn):
            rollup.rollup_day(conn, export_dir, day, now=NOW)


async def test_stats_of_the_capture_day_prefix_and_slash(
    fake_discord: FakeDiscord, bot: WikiBot, db_url: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(roll_up_capture_day, db_url, tmp_path)
    expected = len(newest_capture_rows("enwiki", bots=True, categorize=True))

    [reply] = await ask(fake_discord, "!stats 2021-08-27 en")
    result = await fake_discord.invoke_slash(
        "stats", {"date": "2021-08-27", "language": "en"}, user=fake_discord.users.alice
    )

    # The capture's day is today for this bot, so its figures are partial, as of the roll-up.
    assert reply.content == (
        f"On 2021-08-27, there were {expected} changes for language 'en'.\n"
        "Partial figures: the day is not over or not final yet (as of today 14:00 UTC)."
    )
    [embed] = reply.embeds
    assert embed["title"] == "en.wikipedia.org on 2021-08-27"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Edits"] == str(
        sum(1 for r in newest_capture_rows("enwiki", bots=True) if r["type"] in ("edit", "new"))
    )
    assert fields["Most edited pages"].startswith("1. [")
    assert embed["footer"]["text"] == "Partial figures, computed 2021-08-27 14:00 UTC"
    [answer] = answer_messages(result)
    assert answer["content"] == reply.content
    assert answer["embeds"][0]["fields"] == embed["fields"]


async def test_stats_of_an_interrupted_day_say_so(
    fake_discord: FakeDiscord, bot: WikiBot, conn: psycopg.Connection
) -> None:
    day = date(2021, 8, 26)
    insert_rollup(conn, day, incomplete=True)
    insert_day_stats(conn, day, "enwiki", changes=1234, edits=1000, top_pages=[("Main Page", 7)])
    conn.commit()

    [reply] = await ask(fake_discord, "!stats 2021-08-26 en")

    assert reply.content == (
        "On 2021-08-26, there were 1234 changes for language 'en'.\n"
        "Collection was interrupted that day, so these figures are incomplete."
    )


async def test_stats_for_a_day_without_data(fake_discord: FakeDiscord, bot: WikiBot) -> None:
    [reply] = await ask(fake_discord, "!stats 2021-08-01 en")
    assert reply.content == "No stats found for en on 2021-08-01\nTestON was not collecting changes that day."


# --- !setLang --------------------------------------------------------------------------------------


async def test_setlang_guild_needs_manage_server_as_prefix_command(
    fake_discord: FakeDiscord, bot: WikiBot
) -> None:
    [refused] = await ask(fake_discord, "!setLang de guild")
    [allowed] = await ask(fake_discord, "!setLang de guild", author=fake_discord.users.moderator)
    [recent] = await ask(fake_discord, "!recent 1")

    assert refused.content == (
        "Only members with the Manage Server permission can set the server's default. "
        "Usage: !setLang <code> [guild]"
    )
    assert allowed.content == "This server's default language is now 'de' (de.wikipedia.org)."
    assert recent.content.startswith("The 1 newest change on de.wikipedia.org")


async def test_setlang_guild_needs_manage_server_as_slash_command(
    fake_discord: FakeDiscord, bot: WikiBot
) -> None:
    refused = await fake_discord.invoke_slash(
        "setlang", {"language": "fr", "server": True}, user=fake_discord.users.alice
    )
    allowed = await fake_discord.invoke_slash(
        "setlang", {"language": "fr", "server": True}, user=fake_discord.users.owner
    )
    mine = await fake_discord.invoke_slash("setlang", {"language": "vi"}, user=fake_discord.users.alice)
    [recent] = await ask(fake_discord, "!recent 1")

    assert refused.responses[0].ephemeral
    assert refused.responses[0].content == (
        "Only members with the Manage Server permission can set the server's default. "
        "Usage: /setlang language:<code> [server]"
    )
    assert allowed.responses[0].content == "This server's default language is now 'fr' (fr.wikipedia.org)."
    assert mine.responses[0].content == "Your default language is now 'vi' (vi.wikipedia.org)."
    assert recent.content.startswith("The 1 newest change on vi.wikipedia.org")  # the user's own comes first


async def test_unknown_language_suggests_near_matches(fake_discord: FakeDiscord, bot: WikiBot) -> None:
    [reply] = await ask(fake_discord, "!setLang enn")
    assert reply.content.startswith("Unknown language 'enn'. Did you mean 'en'")
    assert reply.content.endswith("Usage: !setLang <code> [guild]")


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "!stats 2025-02-30",
            "'2025-02-30' is not a real day. Usage: !stats <yyyy-mm-dd>|<from>..<to> [lang]",
        ),
        (
            "!stats 2000-01-01",
            "2000-01-01 is before Wikipedia began (2001). Usage: !stats <yyyy-mm-dd>|<from>..<to> [lang]",
        ),
        (
            "!stats 2021-08-28",
            "2021-08-28 is in the future (today is 2021-08-27 UTC). "
            "Usage: !stats <yyyy-mm-dd>|<from>..<to> [lang]",
        ),
        (
            "!stats",
            "Which day? Give a date such as 2025-02-04. Usage: !stats <yyyy-mm-dd>|<from>..<to> [lang]",
        ),
        (
            "!stats 2021-08-27 en de",
            "Unexpected extra argument 'de'. Usage: !stats <yyyy-mm-dd>|<from>..<to> [lang]",
        ),
        ("!recent en ten", "Unexpected extra argument 'ten'. Usage: !recent [lang] [n] [bots]"),
        ("!recent 2.5", "'2.5' is not a whole number of changes. Usage: !recent [lang] [n] [bots]"),
        ("!recent 0", "The number of changes must be from 1 to 100. Usage: !recent [lang] [n] [bots]"),
        # An unbalanced quote: discord.py's own parser fails, and the text is parsed as `teston ask` would.
        ('!recent "en', "Unknown language '\"en'. Did you mean 'en'? Usage: !recent [lang] [n] [bots]"),
        (
            "!recent " + "x" * 300,
            "That is too long (300 characters; at most 200). Usage: !recent [lang] [n] [bots]",
        ),
        (
            "!recent **@everyone**",
            "Unknown language '\\*\\*@\u200beveryone\\*\\*'. Usage: !recent [lang] [n] [bots]",
        ),
    ],
)
async def test_bad_arguments_get_one_usage_line(
    fake_discord: FakeDiscord, bot: WikiBot, text: str, expected: str
) -> None:
    [reply] = await ask(fake_discord, text)
    assert reply.content == expected
    assert reply.embeds == []
    assert reply.mention_everyone is False
    assert reply.mention_ids == []
    assert reply.mention_role_ids == []


async def test_slash_errors_are_private(fake_discord: FakeDiscord, bot: WikiBot) -> None:
    result = await fake_discord.invoke_slash("stats", {"date": "2025-02-30"}, user=fake_discord.users.alice)
    [response] = result.responses
    assert response.ephemeral
    assert (
        response.content
        == "'2025-02-30' is not a real day. Usage: /stats date:<yyyy-mm-dd>|<from>..<to> [language]"
    )
    assert fake_discord.bot_messages() == []


async def test_mentions_in_arguments_never_ping(fake_discord: FakeDiscord, bot: WikiBot) -> None:
    role = fake_discord.roles.moderators
    [reply] = await ask(fake_discord, f"!setLang <@&{role.id}>")
    assert reply.mention_role_ids == []
    assert reply.mention_everyone is False
    assert "<@&" not in reply.content


async def test_unknown_commands_are_ignored(fake_discord: FakeDiscord, bot: WikiBot) -> None:
    handled = HandledCommands(bot)
    sent = await fake_discord.send_user_message("!ping", author=fake_discord.users.alice)
    [error] = await handled.wait_for(sent)
    assert isinstance(error, commands.CommandNotFound)
    assert fake_discord.bot_messages() == []
    [help_reply] = await ask(fake_discord, "!help")
    assert help_reply.id > sent.id
    assert [m.id for m in fake_discord.bot_messages()] == [help_reply.id]
    assert help_reply.embeds[0]["title"] == "TestON commands"


async def test_invisible_format_characters_in_a_command_are_ignored(
    fake_discord: FakeDiscord, bot: WikiBot
) -> None:
    [typed] = await ask(fake_discord, "!recent en 5")
    # A zero-width space pasted after the name (and a word joiner before it): Unicode category Cf.
    [pasted] = await ask(fake_discord, "\u2060!recent\u200b en 5")
    assert pasted.content.startswith("The 5 newest changes on en.wikipedia.org")
    assert (pasted.content, pasted.embeds) == (typed.content, typed.embeds)


async def test_help_as_slash_command(fake_discord: FakeDiscord, bot: WikiBot) -> None:
    result = await fake_discord.invoke_slash("help", {"command": "stats"}, user=fake_discord.users.alice)
    [response] = result.responses
    assert response.ephemeral
    assert "!stats <yyyy-mm-dd>|<from>..<to> [lang]" in response.embeds[0]["description"]


async def test_per_user_cooldown(fake_discord: FakeDiscord, core: CommandCore) -> None:
    alice = fake_discord.users.alice
    async with running(make_bot(core, cooldown=commands.Cooldown(1, 60.0)), fake_discord) as client:
        handled = HandledCommands(client)
        [first] = await ask(fake_discord, "!help")
        [second] = await ask(fake_discord, "!help")
        third = await fake_discord.send_user_message("!help", author=alice)
        fourth = await fake_discord.send_user_message("!HELP", author=alice)
        [other_user] = await ask(fake_discord, "!help", author=fake_discord.users.moderator)
        slash = await fake_discord.invoke_slash("help", user=alice)
        # Both were handled (as cooldowns), so any reply to them would have been sent by now.
        errors = await handled.wait_for(third, fourth)
    assert all(isinstance(error, commands.CommandOnCooldown) for error in errors)
    assert first.embeds
    assert other_user.embeds
    assert second.content.startswith("Slow down a little: try again in ")
    # One notice per cooldown: later commands within it are ignored rather than answered in public.
    replied_to = {str((m.message_reference or {}).get("message_id")) for m in fake_discord.bot_messages()}
    assert str(third.id) not in replied_to
    assert str(fourth.id) not in replied_to
    assert [m.id for m in fake_discord.bot_messages() if m.id > second.id] == [other_user.id]
    # A slash command is always answered, privately.
    [notice] = slash.responses
    assert notice.ephemeral
    assert (notice.content or "").startswith("Slow down a little")


def test_slow_down_notices_once_per_cooldown_and_per_user() -> None:
    now = [100.0]
    notices = SlowDownNotices(clock=lambda: now[0])
    assert notices.should_notify(1, retry_after=10.0)
    assert not notices.should_notify(1, retry_after=9.0)
    assert notices.should_notify(2, retry_after=10.0)
    now[0] = 110.5
    assert notices.should_notify(1, retry_after=10.0)  # a new cooldown, a new notice
    assert not notices.should_notify(1, retry_after=5.0)


async def test_concurrent_slash_commands_each_get_their_own_answer(
    fake_discord: FakeDiscord, bot: WikiBot
) -> None:
    users = [fake_discord.users.alice, fake_discord.users.moderator, fake_discord.users.owner]
    languages = ["en", "vi", "wikidata"]
    started = [
        await fake_discord.start_slash("recent", {"language": lang, "count": 2}, user=user)
        for user, lang in zip(users, languages, strict=True)
    ]
    for result in started:
        await fake_discord.state.changes.wait_for(result.has_visible_answer, timeout=5, what="an answer")
    hosts = [answer_messages(result)[0]["content"].split(" on ")[1].split(",")[0] for result in started]
    assert hosts == ["en.wikipedia.org", "vi.wikipedia.org", "www.wikidata.org"]


# --- without the Message Content intent ------------------------------------------------------------


async def test_bot_falls_back_to_slash_commands_without_message_content(
    core: CommandCore, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord.start(allowed_privileged_intents=0) as fake:
        with pointed_at(fake):
            task = asyncio.create_task(run_bot(core, SETTINGS, cooldown=None, guild_ready_timeout=0.05))
            try:
                # The first IDENTIFY asks for Message Content and is refused; the second does not ask.
                for _ in range(100):
                    if (
                        fake.gateway.session is not None
                        and not fake.intents & discord.Intents(message_content=True).value
                    ):
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.2)
                result = await fake.invoke_slash(
                    "recent", {"language": "en", "count": 1}, user=fake.users.alice
                )
                sent = await fake.send_user_message(
                    f"{fake.users.bot.mention} recent en 1", author=fake.users.alice
                )
                [mentioned] = await fake.wait_for_bot_messages(after=sent, timeout=5)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    assert answer_messages(result)[0]["content"].startswith("The 1 newest change on en.wikipedia.org")
    assert mentioned.content.startswith("The 1 newest change on en.wikipedia.org")
    assert "Message Content Intent" in caplog.text
    assert "test-token" not in caplog.text


# --- as a component of `teston up` -----------------------------------------------------------------


async def test_bot_service_starts_answers_and_stops_cleanly(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await ingest_file(db_url, CAPTURE, catalog=CATALOG)
    monkeypatch.setenv("DISCORD_TOKEN", "test-token")
    settings = load_settings(env_file=None)
    async with FakeDiscord.start() as fake:
        with pointed_at(fake):
            service = discord_bot_service(settings, db_url, catalog=CATALOG, guild_ready_timeout=0.05)
            await service.start()
            waiting = asyncio.create_task(service.wait())
            try:
                await fake.wait_until_identified(timeout=5)
                await fake.state.changes.wait_for(
                    lambda: fake.registered_commands, timeout=5, what="the slash commands"
                )
                result = await fake.invoke_slash("help", user=fake.users.alice, timeout=5)
            finally:
                await service.stop()
            await asyncio.wait_for(waiting, timeout=5)

    assert result.responses[0].embeds[0]["title"] == "TestON commands"
    assert "test-token" not in caplog.text


async def test_the_bot_service_keeps_recent_answers_until_the_ingester_commits_to_their_wiki(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ingest_file(db_url, CAPTURE, catalog=CATALOG)
    monkeypatch.setenv("DISCORD_TOKEN", "test-token")
    settings = load_settings(env_file=None)
    registry = CollectorRegistry()

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    async with FakeDiscord.start() as fake:
        with pointed_at(fake):
            service = discord_bot_service(
                settings, db_url, catalog=CATALOG, metrics=BotMetrics(registry), guild_ready_timeout=0.05
            )
            await service.start()
            try:
                await fake.wait_until_identified(timeout=5)
                await fake.state.changes.wait_for(
                    lambda: fake.registered_commands, timeout=5, what="the slash commands"
                )
                for _ in range(100):
                    if sample("teston_bot_notices_following") == 1:
                        break
                    await asyncio.sleep(0.05)
                assert sample("teston_bot_notices_following") == 1

                async def newest_line() -> str:
                    result = await fake.invoke_slash(
                        "recent", {"language": "en", "count": 1}, user=fake.users.alice, timeout=5
                    )
                    return embed_lines(answer_messages(result)[0]["embeds"])[0]

                first = await newest_line()
                assert await newest_line() == first
                assert sample("teston_bot_reads_total", kind="recent", served="kept") == 1
                await ingest_file(db_url, DATA / "2025-05-03_sample_144.jsonl", catalog=CATALOG)
                lines = [await newest_line()]
                while "2021-08-27" in lines[-1] and len(lines) < 50:
                    await asyncio.sleep(0.05)
                    lines.append(await newest_line())
            finally:
                await service.stop()
    assert "2021-08-27" in first
    assert "2025-05-03" in lines[-1]


class Bystander:
    """Another component of `teston up` (ingestion, say): records whether it was started and stopped."""

    name = "bystander"

    def __init__(self) -> None:
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def wait(self) -> None:
        await asyncio.Event().wait()

    async def stop(self) -> None:
        self.events.append("stop")


async def wait_for_record(caplog: pytest.LogCaptureFixture, text: str, *, count: int = 1) -> None:
    for _ in range(200):
        if sum(text in record.getMessage() for record in caplog.records) >= count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"no {count} log record(s) with {text!r}: {caplog.text}")


async def test_a_refused_token_is_one_error_and_the_rest_of_up_keeps_running(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "MTIz.wrong.token")
    settings = load_settings(env_file=None)
    bystander = Bystander()
    stop = asyncio.Event()
    async with FakeDiscord.start() as fake:
        with pointed_at(fake):
            service = discord_bot_service(settings, db_url, catalog=CATALOG, guild_ready_timeout=0.05)
            up = asyncio.create_task(run_components([bystander, service], stop))
            try:
                await wait_for_record(caplog, "DISCORD_TOKEN")
                # The bot has given up. Were that to end `up`, it would within a few turns of the event
                # loop (the bot's `wait` returns, `run_components` stops everything): let them pass.
                bot_task = service._task
                assert bot_task is not None
                await asyncio.wait({bot_task}, timeout=5)
                assert bot_task.done()
                for _ in range(20):
                    await asyncio.sleep(0)
                assert not up.done()
                assert bystander.events == ["start"]
            finally:
                stop.set()
                await asyncio.wait_for(up, timeout=5)  # and `up` ends cleanly when asked

    assert bystander.events == ["start", "stop"]
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert errors[0].exc_info is None
    assert "\n" not in errors[0].getMessage()
    assert "Discord refused the token in DISCORD_TOKEN" in errors[0].getMessage()
    assert "The rest of TestON keeps running." in errors[0].getMessage()
    assert "MTIz.wrong.token" not in caplog.text


async def test_the_bot_connects_once_discord_is_reachable(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "test-token")
    settings = load_settings(env_file=None)
    with socket.socket() as unreachable:
        # Bound but not listening: every connection to it is refused, as with Discord down.
        unreachable.bind(("127.0.0.1", 0))
        monkeypatch.setattr(Route, "BASE", f"http://127.0.0.1:{unreachable.getsockname()[1]}/api/v10")
        backoff = Backoff(first=0.05, longest=0.2, jitter=lambda: 0.0)
        service = discord_bot_service(
            settings, db_url, catalog=CATALOG, backoff=backoff, guild_ready_timeout=0.05
        )
        await service.start()
        waiting = asyncio.create_task(service.wait())
        try:
            await wait_for_record(caplog, "cannot reach Discord", count=3)
            assert not waiting.done()
            async with FakeDiscord.start() as fake:
                with pointed_at(fake):
                    await fake.wait_until_identified(timeout=5)
                    await fake.state.changes.wait_for(
                        lambda: fake.registered_commands, timeout=5, what="the slash commands"
                    )
                    result = await fake.invoke_slash("help", user=fake.users.alice, timeout=5)
                    await service.stop()
        finally:
            await service.stop()
        await asyncio.wait_for(waiting, timeout=5)

    assert result.responses[0].embeds[0]["title"] == "TestON commands"
    retries = [record for record in caplog.records if "cannot reach Discord" in record.getMessage()]
    assert [record.levelno for record in retries[:3]] == [logging.WARNING] * 3
    assert all(record.exc_info is None for record in retries)
    assert retries[0].getMessage().startswith("cannot reach Discord (attempt 1: ClientConnectorError")
    assert "trying again in 0.0 s" in retries[0].getMessage()  # 0.05 s: half of it fixed, no jitter
    assert "(attempt 3: " in retries[2].getMessage()
    assert not any(record.levelno >= logging.ERROR for record in caplog.records), caplog.text


async def test_teston_bot_alone_exits_on_a_refused_token_with_one_line(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DB_ADDR", db_url)
    monkeypatch.setenv("DISCORD_TOKEN", "MTIz.wrong.token")
    async with FakeDiscord.start() as fake:
        with pointed_at(fake):
            # The command runs its own event loop, so it runs in a thread while the fake serves here.
            result = await asyncio.wait_for(asyncio.to_thread(CliRunner().invoke, app, ["bot"]), 30)

    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert errors[0].exc_info is None
    assert "Discord refused the token in DISCORD_TOKEN" in errors[0].getMessage()


def test_backoff_doubles_up_to_the_longest_with_jitter_on_half() -> None:
    fixed = Backoff(first=2.0, longest=60.0, jitter=lambda: 0.0)
    assert [fixed.delay(n) for n in (1, 2, 3, 6, 7, 1000)] == [1.0, 2.0, 4.0, 30.0, 30.0, 30.0]
    assert Backoff(first=2.0, longest=60.0, jitter=lambda: 0.999).delay(3) == pytest.approx(7.996)


def closed(code: int) -> discord.ConnectionClosed:
    return discord.ConnectionClosed(None, shard_id=None, code=code)  # type: ignore[arg-type]


def response(status: int) -> Any:
    return SimpleNamespace(status=status, reason="")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (aiohttp.ClientConnectionError("Cannot connect to host discord.com:443"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (discord.GatewayNotFound(), True),
        (closed(1006), True),
        (closed(4000), True),
        (closed(4004), False),
        (closed(4013), False),
        (discord.DiscordServerError(response(503), "Service Unavailable"), True),
        (discord.HTTPException(response(429), "Too Many Requests"), True),
        (discord.Forbidden(response(403), "Missing Access"), False),
        (discord.LoginFailure("Improper token has been passed."), False),
        (ValueError("a bug"), False),
    ],
)
def test_which_failures_are_waited_out(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


# --- slow or broken dependencies -------------------------------------------------------------------


class SlowDatabase:
    """Connections that take `delay` seconds to arrive, or fail with `error` (a bug, not a DB outage)."""

    def __init__(self, pool: Any, *, delay: float = 0.0, error: Exception | None = None) -> None:
        self.pool, self.delay, self.error = pool, delay, error

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        async with self.pool.connection() as conn:
            yield conn


async def test_a_slow_answer_is_deferred_then_sent(
    fake_discord: FakeDiscord, core: CommandCore, pool: Any
) -> None:
    slow = dataclasses.replace(core, database=SlowDatabase(pool, delay=2.5))
    async with running(make_bot(slow), fake_discord):
        result = await fake_discord.invoke_slash(
            "recent", {"language": "en", "count": 1}, user=fake_discord.users.alice, timeout=8
        )
    assert result.deferred
    assert result.message is not None
    assert result.message.content.startswith("The 1 newest change on en.wikipedia.org")


async def test_an_unexpected_error_is_one_friendly_line(
    fake_discord: FakeDiscord, core: CommandCore, pool: Any, caplog: pytest.LogCaptureFixture
) -> None:
    broken = dataclasses.replace(core, database=SlowDatabase(pool, error=RuntimeError("bug in a dependency")))
    async with running(make_bot(broken), fake_discord):
        [prefix_reply] = await ask(fake_discord, "!recent en 1")
        result = await fake_discord.invoke_slash(
            "stats", {"date": "2021-08-27"}, user=fake_discord.users.alice
        )
    expected = "Something went wrong answering that; it has been logged. Please try again later."
    assert prefix_reply.content == expected
    assert result.responses[0].content == expected
    assert result.responses[0].ephemeral
    assert "bug in a dependency" in caplog.text  # logged with its traceback, never shown in chat
    assert "Traceback" not in prefix_reply.content


async def test_commands_in_direct_messages(fake_discord: FakeDiscord, bot: WikiBot) -> None:
    alice = fake_discord.users.alice
    dm = fake_discord.dm_channel(alice)
    sent = await fake_discord.send_user_message("!setLang de guild", author=alice, channel=dm)
    [refused] = await fake_discord.wait_for_bot_messages(dm, after=sent, timeout=5)
    sent = await fake_discord.send_user_message("!recent 1", author=alice, channel=dm)
    [recent] = await fake_discord.wait_for_bot_messages(dm, after=sent, timeout=5)

    assert refused.content == (
        "A server's default can only be set inside that server. Usage: !setLang <code> [guild]"
    )
    assert recent.content.startswith("The 1 newest change on en.wikipedia.org")
