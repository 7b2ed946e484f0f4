"""FakeDiscord: the gateway and REST API on one local aiohttp server, plus the API tests drive it with."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from .gateway import Gateway
from .models import (
    PRIVILEGED_INTENTS,
    Channel,
    ChannelType,
    Guild,
    Intent,
    InteractionType,
    Message,
    PostAttempt,
    RegisteredCommand,
    User,
)
from .payloads import gateway_message_payload, interaction_payload
from .ratelimits import ChannelRateLimits
from .rest import INTERNAL_ERRORS, RestApi, discord_errors
from .slash import OptionValue, SlashInvocationError, command_data, find_command
from .state import FakeState, InteractionResult
from .world import Channels, Roles, Users, World

log = logging.getLogger(__name__)


class FakeDiscord:
    """A local Discord with one guild, driving a real client over a real websocket and real HTTP.

    Start it with `async with FakeDiscord.start() as fake:`; point discord.py at it with
    `tests.fakediscord.discordpy.pointed_at(fake)`.
    """

    def __init__(
        self,
        *,
        token: str = "test-token",
        allowed_privileged_intents: int = PRIVILEGED_INTENTS,
        heartbeat_interval_ms: int = 41_250,
        interaction_ack_deadline: float = 3.0,
        recommended_shards: int = 1,
        channel_rate_limit: tuple[int, float] | None = None,
    ) -> None:
        self.token = token
        self.world = World()
        self.state = FakeState(self.world)
        self.gateway = Gateway(
            self.world,
            token=token,
            allowed_privileged_intents=allowed_privileged_intents,
            heartbeat_interval_ms=heartbeat_interval_ms,
            recommended_shards=recommended_shards,
        )
        self._rest = RestApi(
            self.state,
            self.gateway,
            token=token,
            allowed_privileged_intents=allowed_privileged_intents,
            ack_deadline=interaction_ack_deadline,
            rate_limits=None if channel_rate_limit is None else ChannelRateLimits(*channel_rate_limit),
        )
        self._runner: web.AppRunner | None = None
        self._internal_errors: list[str] = []
        self.base_url = ""
        self.gateway_url = ""

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        *,
        token: str = "test-token",
        allowed_privileged_intents: int = PRIVILEGED_INTENTS,
        heartbeat_interval_ms: int = 41_250,
        interaction_ack_deadline: float = 3.0,
        recommended_shards: int = 1,
        channel_rate_limit: tuple[int, float] | None = None,
    ) -> AsyncIterator[FakeDiscord]:
        """Serve on 127.0.0.1 with an ephemeral port for the duration of the block.

        `recommended_shards` is the shard count `GET /gateway/bot` answers. With `channel_rate_limit`
        (posts, seconds), e.g. Discord's `ratelimits.DISCORD_CHANNEL_LIMIT`, message posts beyond that
        many per window in one channel are answered 429 (see `rate_limits`).
        """
        fake = cls(
            token=token,
            allowed_privileged_intents=allowed_privileged_intents,
            heartbeat_interval_ms=heartbeat_interval_ms,
            interaction_ack_deadline=interaction_ack_deadline,
            recommended_shards=recommended_shards,
            channel_rate_limit=channel_rate_limit,
        )
        await fake._serve()
        try:
            yield fake
        finally:
            await fake._shutdown()

    async def _serve(self) -> None:
        app = web.Application(middlewares=[discord_errors])
        app[INTERNAL_ERRORS] = self._internal_errors
        app.router.add_get("/", self.gateway.handle)
        app.add_routes(self._rest.routes())
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/api/v10"
        self.gateway_url = f"ws://{host}:{port}/"
        self.gateway.url = self.gateway_url
        log.info("fake Discord listening at %s", self.base_url)

    async def _shutdown(self) -> None:
        await self.gateway.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._internal_errors:
            log.error("fake Discord hit internal errors: %s", self._internal_errors)

    # -- who and where -------------------------------------------------------------------------------

    @property
    def users(self) -> Users:
        """`bot`, `alice` (no special permissions), `moderator` (Manage Server) and `owner`."""
        return self.world.users

    @property
    def channels(self) -> Channels:
        """`general` and `moderation`, both text channels of the guild."""
        return self.world.channels

    @property
    def roles(self) -> Roles:
        """`everyone` and `moderators` (MANAGE_GUILD)."""
        return self.world.roles

    @property
    def guild(self) -> Guild:
        return self.world.guild

    def add_guild(self, guild_id: int, name: str) -> Channel:
        """Add a guild (before the bot connects) with everyone in it; return its `general` channel.

        Its events go to the gateway session of shard `(guild_id >> 22) % shard_count`.
        """
        return self.world.add_guild(guild_id, name)

    @property
    def application_id(self) -> int:
        return self.world.application_id

    def dm_channel(self, user: User) -> Channel:
        """The DM channel between `user` and the bot."""
        return self.world.dm_channel(user)

    # -- what the bot did ---------------------------------------------------------------------------

    @property
    def intents(self) -> int:
        """The intents the bot sent in IDENTIFY."""
        return self.gateway.intents

    @property
    def registered_commands(self) -> list[RegisteredCommand]:
        """Every application command the bot has synced, global and guild."""
        return self.state.all_commands()

    def registered_command(self, name: str, *, guild_id: int | None = None) -> RegisteredCommand:
        """The synced command called `name` (global unless `guild_id` is given)."""
        for command in self.state.commands.get(guild_id, []):
            if command.name == name:
                return command
        raise KeyError(f"no {'global' if guild_id is None else 'guild'} command /{name} was synced")

    @property
    def unhandled_requests(self) -> list[tuple[str, str]]:
        """(method, path) of each request the fake has no route for."""
        return list(self.state.unhandled_requests)

    @property
    def rate_limits(self) -> ChannelRateLimits | None:
        """The enforced per-channel limit and its counts (429s answered, 429s ignored), if any."""
        return self._rest.rate_limits

    @property
    def internal_errors(self) -> list[str]:
        """Requests the fake itself failed on; should stay empty."""
        return list(self._internal_errors)

    @property
    def typing_channel_ids(self) -> list[int]:
        return list(self.state.typing_channel_ids)

    def messages(self, channel: Channel) -> list[Message]:
        """Every message still in `channel` that its members can see, oldest first."""
        return [m for m in self.state.channel_messages(channel.id) if not m.ephemeral]

    def attachment_bytes(self, attachment: dict[str, Any]) -> bytes:
        """The uploaded content of one of a message's attachments."""
        return self.state.uploads[attachment["id"]]

    def bot_messages(self, channel: Channel | None = None) -> list[Message]:
        """Messages the bot posted (including non-ephemeral interaction responses), oldest first."""
        bot_id = self.world.users.bot.id
        return [
            m
            for m in self.state.messages.values()
            if m.author.id == bot_id
            and not m.deleted
            and not m.ephemeral
            and (channel is None or m.channel_id == channel.id)
        ]

    async def wait_until_identified(self, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the bot's IDENTIFY (READY and GUILD_CREATE are sent by then); return its payload."""
        try:
            async with asyncio.timeout(timeout):
                await self.gateway.identified.wait()
        except TimeoutError:
            raise TimeoutError(f"fake Discord: no IDENTIFY within {timeout}s") from None
        assert self.gateway.session is not None
        return self.gateway.session.identify

    async def wait_for_bot_messages(
        self,
        channel: Channel | None = None,
        *,
        count: int = 1,
        timeout: float = 5.0,
        after: Message | None = None,
    ) -> list[Message]:
        """Wait for `count` bot messages (in `channel`, newer than `after`); return the first `count`."""

        def found() -> list[Message] | None:
            messages = [m for m in self.bot_messages(channel) if after is None or m.id > after.id]
            return messages[:count] if len(messages) >= count else None

        where = "any channel" if channel is None else f"#{channel.name or channel.id}"
        return await self.state.changes.wait_for(
            found, timeout=timeout, what=f"{count} bot message(s) in {where}"
        )

    def post_attempts(self, channel: Channel | None = None) -> list[PostAttempt]:
        """Every request to create a message (in `channel`), answered or refused, oldest first."""
        return [a for a in self.state.post_attempts if channel is None or a.channel_id == channel.id]

    # -- acting as Discord ------------------------------------------------------------------------------

    def rate_limit_next_post(self, channel: Channel, *, retry_after: float) -> None:
        """Answer the next message post in `channel` with a 429 asking to retry after `retry_after` s."""
        self.state.injected_rate_limits.setdefault(channel.id, []).append(retry_after)

    def delete_channel(self, channel: Channel) -> None:
        """Delete `channel`: requests for it answer 404 Unknown Channel from now on."""
        self.world.deleted_channel_ids.add(channel.id)

    def deny_posting(self, channel: Channel) -> None:
        """Take Send Messages away from the bot in `channel`: posts there answer 403 Missing Permissions."""
        self.world.muted_channel_ids.add(channel.id)

    # -- acting as users ------------------------------------------------------------------------------

    async def send_user_message(
        self, content: str, *, author: User, channel: Channel | None = None, reply_to: Message | None = None
    ) -> Message:
        """`author` posts `content` in `channel` (default #general); the bot gets MESSAGE_CREATE.

        Without the MESSAGE_CONTENT intent the bot receives empty content, embeds and attachments
        unless the message mentions it or is a DM, as Discord does since September 2022.
        """
        channel = channel or self.world.channels.general
        if channel.type is ChannelType.DM and channel.recipient_id != author.id:
            raise ValueError(f"{author.username} is not in DM channel {channel.id}")
        if channel.guild_id is not None and author.id not in self.world.members:
            raise ValueError(f"{author.username} is not a member of the guild")
        if len(content) > 2000:
            raise ValueError("Discord clients refuse messages over 2000 characters")
        session = self.gateway.session_for(channel.guild_id)
        if session is None:
            raise RuntimeError(f"fake Discord: no bot has identified on the shard of {channel.name!r}")
        intents = session.intents
        message = self.state.add_user_message(
            author=author, channel=channel, content=content, reply_to=reply_to
        )
        await self.state.changes.notify()
        needed = Intent.GUILD_MESSAGES if channel.guild_id is not None else Intent.DIRECT_MESSAGES
        if intents & needed:
            bot_id = self.world.users.bot.id
            with_content = bool(
                intents & Intent.MESSAGE_CONTENT
                or channel.type is ChannelType.DM
                or bot_id in message.mention_ids
                or author.id == bot_id
            )
            payload = gateway_message_payload(
                message, self.world, by_id=self.state.messages, with_content=with_content
            )
            await self.gateway.dispatch("MESSAGE_CREATE", payload)
        return message

    def _prepare_interaction(
        self,
        name: str,
        options: Mapping[str, OptionValue] | None,
        *,
        user: User,
        channel: Channel,
        focused: str | None,
    ) -> tuple[RegisteredCommand, dict[str, Any]]:
        command = find_command(self.state.all_commands(), name, guild_id=channel.guild_id)
        # Discord's client hides commands the member lacks default_member_permissions for, and
        # guild-only commands in DMs, so a user cannot invoke them at all.
        required = command.payload.get("default_member_permissions")
        missing = 0 if required is None else int(required) & ~self.world.permissions(user)
        if channel.guild_id is not None and missing:
            raise SlashInvocationError(
                f"{user.username} cannot see /{command.name}: needs permissions {required}"
            )
        if channel.type is ChannelType.DM:
            contexts = command.payload.get("contexts")
            if command.payload.get("dm_permission") is False or (contexts is not None and 1 not in contexts):
                raise SlashInvocationError(f"/{command.name} is not available in DMs")
        data = command_data(
            command, name, options or {}, self.world, guild_id=channel.guild_id, invoker=user, focused=focused
        )
        return command, data

    async def _dispatch_interaction(
        self,
        kind: InteractionType,
        name: str,
        data: dict[str, Any],
        *,
        user: User,
        channel: Channel,
        locale: str,
    ) -> InteractionResult:
        interaction = self.state.new_interaction(type=kind, command_name=name, user=user, channel=channel)
        payload = interaction_payload(
            interaction_id=interaction.id,
            token=interaction.token,
            interaction_type=int(kind),
            data=data,
            world=self.world,
            user=user,
            channel=channel,
            locale=locale,
        )
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return interaction

    async def start_slash(
        self,
        name: str,
        options: Mapping[str, OptionValue] | None = None,
        *,
        user: User,
        channel: Channel | None = None,
        locale: str = "en-US",
    ) -> InteractionResult:
        """Send the INTERACTION_CREATE for `/name options` and return at once, without waiting."""
        channel = channel or self.world.channels.general
        _, data = self._prepare_interaction(name, options, user=user, channel=channel, focused=None)
        return await self._dispatch_interaction(
            InteractionType.APPLICATION_COMMAND, name, data, user=user, channel=channel, locale=locale
        )

    async def invoke_slash(
        self,
        name: str,
        options: Mapping[str, OptionValue] | None = None,
        *,
        user: User,
        channel: Channel | None = None,
        locale: str = "en-US",
        timeout: float = 5.0,
    ) -> InteractionResult:
        """`user` runs `/name` (sub-commands as "group sub") with `options` and the bot answers.

        Option values are plain Python values (str, int, float, bool) or the fake's User, Channel and
        Role objects; they are checked against the schema the bot synced. Returns once the bot has
        answered visibly: a message callback, or a deferral followed by a followup or edit.
        """
        interaction = await self.start_slash(name, options, user=user, channel=channel, locale=locale)
        await self.state.changes.wait_for(
            interaction.has_visible_answer,
            timeout=timeout,
            what=lambda: (
                f"an answer to /{name}; responses so far: {interaction.responses}, "
                f"refused by Discord: {[e.body for e in interaction.rejected]}"
            ),
        )
        return interaction

    async def autocomplete(
        self,
        name: str,
        *,
        focused: str,
        value: str,
        options: Mapping[str, OptionValue] | None = None,
        user: User,
        channel: Channel | None = None,
        locale: str = "en-US",
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """`user` has typed `value` into option `focused` of `/name`; return the choices the bot offers.

        Raises the ApiError Discord would have answered if it refused the bot's choices.
        """
        channel = channel or self.world.channels.general
        values = {**(options or {}), focused: value}
        _, data = self._prepare_interaction(name, values, user=user, channel=channel, focused=focused)
        interaction = await self._dispatch_interaction(
            InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE,
            name,
            data,
            user=user,
            channel=channel,
            locale=locale,
        )
        await self.state.changes.wait_for(
            lambda: interaction.acknowledged or interaction.rejected,
            timeout=timeout,
            what=f"autocomplete choices for /{name} {focused}",
        )
        if not interaction.acknowledged:
            raise interaction.rejected[0]
        return interaction.choices

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT; the client should reconnect and RESUME its session."""
        await self.gateway.request_reconnect()
