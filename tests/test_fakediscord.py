"""The fake Discord drives the real discord.py client: gateway, REST, slash commands and limits.

A small throwaway bot is defined here so these tests pin down the fake, not the project's bot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakediscord import (
    ApiError,
    FakeDiscord,
    OptionValue,
    SlashInvocationError,
    pointed_at,
    pytest_plugin,
    running,
)

# Re-exported so pytest finds the plugin's fixture in this module.
fake_discord = pytest_plugin.fake_discord

# 30 wiki language codes: more than the 25 choices Discord accepts in one autocomplete answer.
_WIKI_CODES = (
    "ar ceb de en eo es fa fi fr he hu id it ja ko nl no pl pt ro ru sv tr uk vi war zh "
    "zh-classical zh-min-nan zh-yue"
)
LANGUAGES = _WIKI_CODES.split()

Context = commands.Context[Any]


class ThrowawayBot(commands.Bot):
    """Just enough bot to exercise each path through the fake."""

    def __init__(self, *, message_content: bool = True) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        # A short guild_ready_timeout: on_ready fires that long after the last GUILD_CREATE.
        super().__init__(command_prefix="!", intents=intents, help_command=None, guild_ready_timeout=0.05)
        self.seen_contents: asyncio.Queue[str] = asyncio.Queue()
        self.command_errors: list[commands.CommandError] = []
        self._add_commands()

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def on_message(self, message: discord.Message) -> None:
        if message.author != self.user:
            self.seen_contents.put_nowait(message.content)
        await self.process_commands(message)

    async def on_command_error(self, ctx: Context, error: commands.CommandError) -> None:
        self.command_errors.append(error)
        if isinstance(error, commands.MissingPermissions):
            await ctx.send("You need the Manage Server permission for that.")

    def _add_commands(self) -> None:
        # The arg-type ignores below work around mypy failing to solve the ParamSpec in
        # discord.py's hybrid_command decorator type; the callbacks themselves are fully typed.
        @self.command()
        async def ping(ctx: Context) -> None:
            await ctx.reply("pong")

        @self.command()
        async def greet(ctx: Context) -> None:
            await ctx.send(
                f"hello {ctx.author.mention} and @everyone",
                allowed_mentions=discord.AllowedMentions(everyone=False, users=[ctx.author], roles=False),
            )

        @self.hybrid_command(description="Repeat some text")  # type: ignore[arg-type]
        async def echo(ctx: Context, text: str, times: int = 1) -> None:
            await ctx.send(text * times)

        @self.hybrid_command(description="Edit statistics for a day")  # type: ignore[arg-type]
        async def stats(ctx: Context, date: str, lang: str = "en") -> None:
            await ctx.defer()
            await ctx.send(embed=discord.Embed(title=f"Edits on {date}", description=f"wiki: {lang}"))

        @stats.autocomplete("lang")
        async def stats_lang(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return [
                app_commands.Choice(name=code, value=code) for code in LANGUAGES if code.startswith(current)
            ]

        @self.hybrid_command(description="Describe a member, a channel and a role")  # type: ignore[arg-type]
        async def whois(
            ctx: Context, member: discord.Member, channel: discord.TextChannel, role: discord.Role
        ) -> None:
            can_manage = member.guild_permissions.manage_guild
            await ctx.send(f"{member.name} in #{channel.name} vs {role.name}: manage_guild={can_manage}")

        @self.hybrid_command(description="Set the default wiki language")  # type: ignore[arg-type]
        @commands.has_guild_permissions(manage_guild=True)
        async def setlang(ctx: Context, code: str) -> None:
            await ctx.send(f"Default language is now {code}.")


@pytest.fixture
async def bot(fake_discord: FakeDiscord) -> AsyncIterator[ThrowawayBot]:
    async with running(ThrowawayBot(), fake_discord) as client:
        yield client


async def test_identify_records_intents_and_zlib_stream_compression(
    fake_discord: FakeDiscord, bot: ThrowawayBot
) -> None:
    identify = await fake_discord.wait_until_identified(timeout=2)

    assert identify["intents"] == bot.intents.value
    assert fake_discord.intents & (1 << 15)  # MESSAGE_CONTENT requested
    assert fake_discord.gateway.compression == ["zlib-stream"]
    assert bot.user is not None
    assert bot.user.id == fake_discord.users.bot.id
    guild = bot.get_guild(fake_discord.guild.id)
    assert guild is not None
    assert guild.owner_id == fake_discord.users.owner.id
    assert sorted(role.name for role in guild.roles) == ["@everyone", "Moderators"]
    assert [channel.name for channel in guild.text_channels] == ["general", "moderation"]
    # The client acknowledged our heartbeat ACKs and tracked every dispatch's sequence number.
    assert fake_discord.gateway.heartbeats >= 1
    assert bot.latency < 1
    session = fake_discord.gateway.session
    assert session is not None
    assert [p["t"] for p in session.sent] == ["READY", "GUILD_CREATE"]
    assert [p["s"] for p in session.sent] == [1, 2]
    assert bot.ws.sequence == 2


async def test_prefix_command_replies_to_the_message(fake_discord: FakeDiscord, bot: ThrowawayBot) -> None:
    sent = await fake_discord.send_user_message("!ping", author=fake_discord.users.alice)

    [reply] = await fake_discord.wait_for_bot_messages(fake_discord.channels.general, timeout=2)

    assert reply.content == "pong"
    assert reply.message_reference is not None
    assert reply.message_reference["message_id"] == str(sent.id)
    # ctx.reply pings the author of the message replied to by default.
    assert reply.mention_ids == [fake_discord.users.alice.id]


async def test_hybrid_command_runs_as_slash_command(fake_discord: FakeDiscord, bot: ThrowawayBot) -> None:
    echo = fake_discord.registered_command("echo")
    assert [(o["name"], o["type"], o.get("required", False)) for o in echo.options] == [
        ("text", 3, True),
        ("times", 4, False),
    ]

    result = await fake_discord.invoke_slash(
        "echo", {"text": "ab", "times": 3}, user=fake_discord.users.alice, timeout=2
    )

    [response] = result.responses
    assert (response.kind, response.type, response.content) == ("callback", 4, "ababab")
    assert result.message is not None
    assert result.message.content == "ababab"
    assert fake_discord.bot_messages(fake_discord.channels.general) == [result.message]


async def test_slash_options_resolve_to_members_channels_and_roles(
    fake_discord: FakeDiscord, bot: ThrowawayBot
) -> None:
    options: dict[str, OptionValue] = {
        "member": fake_discord.users.moderator,
        "channel": fake_discord.channels.moderation,
        "role": fake_discord.roles.moderators,
    }

    result = await fake_discord.invoke_slash("whois", options, user=fake_discord.users.alice, timeout=2)

    assert result.responses[0].content == "moderator in #moderation vs Moderators: manage_guild=True"


async def test_deferred_slash_command_is_answered_by_its_followup(
    fake_discord: FakeDiscord, bot: ThrowawayBot
) -> None:
    result = await fake_discord.invoke_slash(
        "stats", {"date": "2021-08-27", "lang": "zh"}, user=fake_discord.users.alice, timeout=2
    )

    assert result.deferred
    assert [r.kind for r in result.responses] == ["callback", "followup"]
    assert result.message is not None
    assert result.message.embeds[0]["title"] == "Edits on 2021-08-27"
    assert result.message.embeds[0]["description"] == "wiki: zh"
    assert result.followups == []  # the followup filled in the "thinking…" message


async def test_autocomplete_returns_the_bots_choices(fake_discord: FakeDiscord, bot: ThrowawayBot) -> None:
    choices = await fake_discord.autocomplete(
        "stats", focused="lang", value="zh-", options={"date": "2021-08-27"}, user=fake_discord.users.alice
    )

    assert [c["value"] for c in choices] == ["zh-classical", "zh-min-nan", "zh-yue"]


async def test_manage_server_check_as_slash_command(fake_discord: FakeDiscord, bot: ThrowawayBot) -> None:
    allowed = await fake_discord.invoke_slash("setlang", {"code": "de"}, user=fake_discord.users.moderator)
    refused = await fake_discord.invoke_slash("setlang", {"code": "de"}, user=fake_discord.users.alice)

    assert allowed.responses[0].content == "Default language is now de."
    assert refused.responses[0].content == "You need the Manage Server permission for that."
    [error] = bot.command_errors
    assert isinstance(error, commands.MissingPermissions)
    assert error.missing_permissions == ["manage_guild"]


async def test_manage_server_check_as_prefix_command(fake_discord: FakeDiscord, bot: ThrowawayBot) -> None:
    general = fake_discord.channels.general
    first = await fake_discord.send_user_message("!setlang de", author=fake_discord.users.moderator)
    [allowed] = await fake_discord.wait_for_bot_messages(general, after=first, timeout=2)
    second = await fake_discord.send_user_message("!setlang fr", author=fake_discord.users.alice)
    [refused] = await fake_discord.wait_for_bot_messages(general, after=second, timeout=2)

    assert allowed.content == "Default language is now de."
    assert refused.content == "You need the Manage Server permission for that."


async def test_without_message_content_intent_only_mentions_and_slash_commands_work(
    fake_discord: FakeDiscord,
) -> None:
    async with running(ThrowawayBot(message_content=False), fake_discord) as client:
        alice = fake_discord.users.alice
        await fake_discord.send_user_message("!ping", author=alice)
        seen = await asyncio.wait_for(client.seen_contents.get(), timeout=2)
        await fake_discord.send_user_message(f"{fake_discord.users.bot.mention} hi", author=alice)
        seen_when_mentioned = await asyncio.wait_for(client.seen_contents.get(), timeout=2)
        dm = fake_discord.dm_channel(alice)
        await fake_discord.send_user_message("!ping", author=alice, channel=dm)
        seen_in_dm = await asyncio.wait_for(client.seen_contents.get(), timeout=2)
        [dm_reply] = await fake_discord.wait_for_bot_messages(dm, timeout=2)
        result = await fake_discord.invoke_slash("echo", {"text": "still works"}, user=alice, timeout=2)

    assert not fake_discord.intents & (1 << 15)
    assert seen == ""
    assert seen_when_mentioned == f"<@{fake_discord.users.bot.id}> hi"
    assert (seen_in_dm, dm_reply.content) == ("!ping", "pong")
    assert result.responses[0].content == "still works"
    assert [m.content for m in fake_discord.bot_messages(fake_discord.channels.general)] == ["still works"]


async def test_message_over_2000_characters_is_refused_like_discord(
    fake_discord: FakeDiscord, bot: ThrowawayBot
) -> None:
    channel = bot.get_channel(fake_discord.channels.general.id)
    assert isinstance(channel, discord.TextChannel)

    with pytest.raises(discord.HTTPException) as refused:
        await channel.send("x" * 2001)
    accepted = await channel.send("x" * 2000)

    assert (refused.value.status, refused.value.code) == (400, 50035)
    assert "In content: Must be 2000 or fewer in length." in refused.value.text
    assert [m.id for m in fake_discord.bot_messages()] == [accepted.id]


async def test_allowed_mentions_are_recorded_and_applied(
    fake_discord: FakeDiscord, bot: ThrowawayBot
) -> None:
    alice = fake_discord.users.alice
    await fake_discord.send_user_message("!greet", author=alice)

    [greeting] = await fake_discord.wait_for_bot_messages(timeout=2)

    assert greeting.content == f"hello <@{alice.id}> and @everyone"
    # Recorded exactly as the bot sent it.
    assert greeting.allowed_mentions == {"parse": [], "users": [alice.id], "replied_user": True}
    assert greeting.mention_ids == [alice.id]
    assert greeting.mention_everyone is False


async def test_wrong_token_is_a_login_failure(fake_discord: FakeDiscord) -> None:
    client = ThrowawayBot()

    with pytest.raises(discord.LoginFailure):
        await client.login("not-the-token")
    await client.close()

    assert client.is_closed()


async def test_command_sync_is_validated_like_discord(fake_discord: FakeDiscord, bot: ThrowawayBot) -> None:
    # discord.py checks names itself, so send the payload a hand-rolled sync might send.
    payload = [{"type": 1, "name": "setLang", "description": "Set the default wiki language"}]

    with pytest.raises(discord.HTTPException) as refused:
        await bot.http.bulk_upsert_global_commands(fake_discord.application_id, payload=payload)

    assert (refused.value.status, refused.value.code) == (400, 50035)
    assert "In 0.name: Command name is invalid" in refused.value.text
    assert {c.name for c in fake_discord.registered_commands} == {"echo", "stats", "whois", "setlang"}


async def test_autocomplete_with_more_than_25_choices_is_refused(
    fake_discord: FakeDiscord, bot: ThrowawayBot
) -> None:
    with pytest.raises(ApiError) as refused:
        await fake_discord.autocomplete(
            "stats", focused="lang", value="", options={"date": "2021-08-27"}, user=fake_discord.users.alice
        )

    assert refused.value.code == 50035
    assert refused.value.errors is not None
    assert "choices" in refused.value.errors["data"]


async def test_unmodelled_route_is_a_404_and_is_recorded(
    fake_discord: FakeDiscord, bot: ThrowawayBot
) -> None:
    channel = bot.get_channel(fake_discord.channels.general.id)
    assert isinstance(channel, discord.TextChannel)

    with pytest.raises(discord.NotFound) as missing:
        await channel.create_invite()

    assert "fake Discord does not model POST" in missing.value.text
    assert fake_discord.unhandled_requests == [("POST", f"/api/v10/channels/{channel.id}/invites")]


async def test_client_resumes_after_reconnect_request(fake_discord: FakeDiscord, bot: ThrowawayBot) -> None:
    resumed = asyncio.Event()

    async def on_resumed() -> None:
        resumed.set()

    bot.add_listener(on_resumed)

    await fake_discord.request_reconnect()
    await asyncio.wait_for(resumed.wait(), timeout=2)
    result = await fake_discord.invoke_slash(
        "echo", {"text": "back"}, user=fake_discord.users.alice, timeout=2
    )

    assert fake_discord.gateway.session is not None
    assert fake_discord.gateway.session.resumes == 1
    assert result.responses[0].content == "back"


async def test_disallowed_privileged_intent_closes_the_gateway() -> None:
    async with FakeDiscord.start(allowed_privileged_intents=0) as fake:
        with pointed_at(fake), pytest.raises(discord.PrivilegedIntentsRequired):
            async with running(ThrowawayBot(message_content=True), fake, ready_timeout=2):
                pass

        assert fake.gateway.close_codes == [4014]


async def test_answer_after_the_three_second_window_is_refused() -> None:
    # A zero-second window stands in for a command that takes longer than Discord's three seconds.
    async with FakeDiscord.start(interaction_ack_deadline=0.0) as fake:
        with pointed_at(fake):
            async with running(ThrowawayBot(), fake, ready_timeout=2):
                with pytest.raises(TimeoutError, match="10062"):
                    await fake.invoke_slash("echo", {"text": "late"}, user=fake.users.alice, timeout=0.5)

    [interaction] = fake.state.interactions.values()
    assert [(e.status, e.code) for e in interaction.rejected] == [(404, 10062)]
    assert interaction.responses == []


async def test_slash_invocations_are_checked_against_the_synced_schema(
    fake_discord: FakeDiscord, bot: ThrowawayBot
) -> None:
    alice = fake_discord.users.alice

    with pytest.raises(SlashInvocationError, match="missing required option"):
        await fake_discord.start_slash("echo", {"times": 2}, user=alice)
    with pytest.raises(SlashInvocationError, match="does not fit option type INTEGER"):
        await fake_discord.start_slash("echo", {"text": "a", "times": "2"}, user=alice)
    with pytest.raises(SlashInvocationError, match="not registered"):
        await fake_discord.start_slash("nope", user=alice)


async def test_the_channel_rate_limit_is_enforced_and_discordpy_honours_it() -> None:
    # Three posts per second per channel (Discord's is five per five seconds), to keep the test short.
    async with FakeDiscord.start(channel_rate_limit=(3, 1.0)) as fake:
        with pointed_at(fake):
            async with running(ThrowawayBot(), fake, ready_timeout=2) as client:
                channel = client.get_partial_messageable(fake.channels.general.id)
                await asyncio.gather(*(channel.send(f"post {n}") for n in range(8)))

    limits = fake.rate_limits
    assert limits is not None
    assert sorted(m.content for m in fake.bot_messages(fake.channels.general)) == [
        f"post {n}" for n in range(8)
    ]
    accepted = [a.at for a in fake.post_attempts(fake.channels.general) if a.status == 200]
    assert len(accepted) == 8
    # No window of one second holds more than three accepted posts.
    assert all(later - earlier >= 1.0 - 0.01 for earlier, later in zip(accepted, accepted[3:], strict=False))
    assert limits.ignored == 0


async def test_posts_beyond_the_channel_limit_are_answered_429_and_counted() -> None:
    async with FakeDiscord.start(channel_rate_limit=(2, 5.0)) as fake:
        url = f"{fake.base_url}/channels/{fake.channels.general.id}/messages"
        headers = {"Authorization": f"Bot {fake.token}"}
        answers = []
        async with aiohttp.ClientSession() as session:
            for n in range(4):
                async with session.post(url, json={"content": f"post {n}"}, headers=headers) as response:
                    answers.append((response.status, await response.json(), dict(response.headers)))

    assert [status for status, _, _ in answers] == [200, 200, 429, 429]
    assert [h["X-RateLimit-Remaining"] for _, _, h in answers] == ["1", "0", "0", "0"]
    assert answers[0][2]["X-RateLimit-Limit"] == "2"
    _, refusal, refusal_headers = answers[2]
    assert refusal["global"] is False
    assert 0 < refusal["retry_after"] <= 5.0
    assert refusal_headers["Via"]
    limits = fake.rate_limits
    assert limits is not None
    # The fourth post came back at once instead of after the third's retry_after.
    assert (limits.limited, limits.ignored) == (2, 1)
    assert [m.content for m in fake.bot_messages(fake.channels.general)] == ["post 0", "post 1"]
