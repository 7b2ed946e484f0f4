"""Everything the fake Discord remembers: messages, synced commands and interactions.

Synchronous and free of network code; REST handlers and the test-facing API both mutate it and
then call `changes.notify()` so anything waiting (a test, usually) re-checks its condition.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import ApiError
from .mentions import pings
from .models import (
    CallbackType,
    Channel,
    InteractionResponse,
    InteractionType,
    Message,
    MessageFlag,
    MessageType,
    Permission,
    PostAttempt,
    RegisteredCommand,
    SnowflakeSource,
    User,
    iso_timestamp,
)
from .payloads import user_payload
from .world import World

T = TypeVar("T")


class Changes:
    """Wakes waiters whenever the state changes; waits are bounded so a test can never hang."""

    def __init__(self) -> None:
        self._condition = asyncio.Condition()

    async def notify(self) -> None:
        async with self._condition:
            self._condition.notify_all()

    async def wait_for(
        self, check: Callable[[], T | None], *, timeout: float, what: str | Callable[[], str]
    ) -> T:
        """Return `check()` once it is truthy; raise TimeoutError naming `what` after `timeout` seconds."""
        async with self._condition:
            try:
                async with asyncio.timeout(timeout):
                    while not (result := check()):
                        await self._condition.wait()
            except TimeoutError:
                described = what() if callable(what) else what
                raise TimeoutError(
                    f"fake Discord: timed out after {timeout}s waiting for {described}"
                ) from None
            return result


@dataclass
class InteractionResult:
    """An interaction the fake sent to the bot and everything the bot answered, in order."""

    id: int
    token: str
    type: InteractionType
    command_name: str
    user: User
    channel: Channel
    created_monotonic: float
    changes: Changes = field(repr=False)
    responses: list[InteractionResponse] = field(default_factory=list)
    # Answers Discord refused (too long, too late, already acknowledged...), in order.
    rejected: list[ApiError] = field(default_factory=list)
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    _messages: dict[int, Message] = field(default_factory=dict, repr=False)

    @property
    def acknowledged(self) -> bool:
        return any(r.kind == "callback" for r in self.responses)

    @property
    def deferred(self) -> bool:
        """Whether the first callback was a deferral ("Bot is thinking…")."""
        callbacks = [r for r in self.responses if r.kind == "callback"]
        return bool(callbacks) and callbacks[0].deferred

    @property
    def message(self) -> Message | None:
        """The original response message as it stands now (after any edits), if one exists."""
        if self.original_message_id is None:
            return None
        return self._messages.get(self.original_message_id)

    @property
    def followups(self) -> list[Message]:
        return [self._messages[i] for i in self.followup_ids if i in self._messages]

    @property
    def choices(self) -> list[dict[str, Any]]:
        """The autocomplete choices the bot returned (empty until it answers)."""
        for response in self.responses:
            if response.type == CallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT:
                return response.choices
        return []

    def has_visible_answer(self) -> bool:
        """A message-bearing callback, or anything sent after a deferral."""
        if not self.responses:
            return False
        first = self.responses[0]
        if first.kind == "callback" and first.type == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
            return len(self.responses) > 1
        return True

    async def wait_for_responses(self, count: int, *, timeout: float = 5.0) -> list[InteractionResponse]:
        """Wait until the bot has made at least `count` responses (callbacks, followups, edits)."""
        await self.changes.wait_for(
            lambda: len(self.responses) >= count,
            timeout=timeout,
            what=f"{count} responses to /{self.command_name} (have {len(self.responses)})",
        )
        return list(self.responses)


class FakeState:
    def __init__(self, world: World) -> None:
        self.world = world
        self.next_id = SnowflakeSource()
        self.changes = Changes()
        self.messages: dict[int, Message] = {}
        self.commands: dict[int | None, list[RegisteredCommand]] = {}
        self.interactions: dict[int, InteractionResult] = {}
        self.typing_channel_ids: list[int] = []
        self.unhandled_requests: list[tuple[str, str]] = []
        # The bytes of every uploaded file, by attachment id (messages keep only the metadata).
        self.uploads: dict[str, bytes] = {}
        self.post_attempts: list[PostAttempt] = []
        # Per channel, the `retry_after` of each 429 to answer the next message posts with.
        self.injected_rate_limits: dict[int, list[float]] = {}

    def message_with_nonce(self, channel_id: int, author_id: int, nonce: str | int) -> Message | None:
        """The message `author_id` created in the channel with this nonce, for `enforce_nonce`."""
        return next(
            (
                m
                for m in self.messages.values()
                if m.channel_id == channel_id
                and m.author.id == author_id
                and m.nonce == nonce
                and not m.deleted
            ),
            None,
        )

    # -- messages ------------------------------------------------------------------------

    def channel_messages(self, channel_id: int) -> list[Message]:
        return [m for m in self.messages.values() if m.channel_id == channel_id and not m.deleted]

    def _store(self, message: Message) -> Message:
        self.messages[message.id] = message
        return message

    def _reply_author(self, reference: dict[str, Any] | None) -> int | None:
        if not reference:
            return None
        referenced = self.messages.get(int(reference.get("message_id") or 0))
        return None if referenced is None else referenced.author.id

    def add_user_message(
        self, *, author: User, channel: Channel, content: str, reply_to: Message | None = None
    ) -> Message:
        """A message typed by a user; mentions ping as in any Discord client."""
        reference = None
        if reply_to is not None:
            reference = {
                "type": 0,
                "message_id": str(reply_to.id),
                "channel_id": str(reply_to.channel_id),
                **({"guild_id": str(reply_to.guild_id)} if reply_to.guild_id else {}),
            }
        may_everyone = bool(self.world.permissions(author) & Permission.MENTION_EVERYONE)
        found = pings(
            content, None, replied_user_id=self._reply_author(reference), may_mention_everyone=may_everyone
        )
        return self._store(
            Message(
                id=self.next_id(),
                channel_id=channel.id,
                guild_id=channel.guild_id,
                author=author,
                content=content,
                message_reference=reference,
                mention_ids=found.user_ids,
                mention_role_ids=found.role_ids,
                mention_everyone=found.everyone,
                type=MessageType.REPLY if reference else MessageType.DEFAULT,
            )
        )

    def add_bot_message(
        self,
        channel: Channel,
        body: dict[str, Any],
        *,
        attachments: list[dict[str, Any]] | None = None,
        interaction: InteractionResult | None = None,
        flags: int = 0,
    ) -> Message:
        """A message the bot created over REST, either in a channel or as an interaction response."""
        content = str(body.get("content") or "")
        reference = _snowflakes_as_strings(body.get("message_reference"))
        bot = self.world.users.bot
        may_everyone = bool(self.world.permissions(bot) & Permission.MENTION_EVERYONE)
        found = pings(
            content,
            body.get("allowed_mentions"),
            replied_user_id=self._reply_author(reference),
            may_mention_everyone=may_everyone,
        )
        message_type = MessageType.REPLY if reference else MessageType.DEFAULT
        metadata = None
        if interaction is not None:
            message_type = MessageType.CHAT_INPUT_COMMAND
            metadata = {
                "id": str(interaction.id),
                "type": int(interaction.type),
                "user": user_payload(interaction.user),
                "authorizing_integration_owners": (
                    {"0": str(channel.guild_id)} if channel.guild_id else {"1": str(interaction.user.id)}
                ),
            }
        return self._store(
            Message(
                id=self.next_id(),
                channel_id=channel.id,
                guild_id=channel.guild_id,
                author=bot,
                content=content,
                embeds=list(body.get("embeds") or []),
                attachments=attachments or [],
                components=list(body.get("components") or []),
                allowed_mentions=body.get("allowed_mentions"),
                message_reference=reference,
                mention_ids=found.user_ids,
                mention_role_ids=found.role_ids,
                mention_everyone=found.everyone,
                flags=int(body.get("flags") or 0) | flags,
                type=message_type,
                tts=bool(body.get("tts")),
                nonce=body.get("nonce"),
                interaction_metadata=metadata,
                webhook_id=self.world.application_id if interaction is not None else None,
                request=body,
            )
        )

    def edit_message(self, message: Message, body: dict[str, Any]) -> Message:
        """Apply a PATCH body; absent keys keep their value, explicit null clears, as Discord does."""
        if "content" in body:
            message.content = str(body["content"] or "")
        if "embeds" in body:
            message.embeds = list(body["embeds"] or [])
        if "components" in body:
            message.components = list(body["components"] or [])
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        if "flags" in body and body["flags"] is not None:
            # Only SUPPRESS_EMBEDS may be toggled by an edit; other flags keep their value.
            message.flags = (message.flags & ~(1 << 2)) | (int(body["flags"]) & (1 << 2))
        message.flags &= ~MessageFlag.LOADING
        found = pings(
            message.content,
            message.allowed_mentions,
            replied_user_id=self._reply_author(message.message_reference),
        )
        message.mention_ids, message.mention_role_ids = found.user_ids, found.role_ids
        message.edited_timestamp = iso_timestamp()
        message.request = body
        return message

    def dm_channel(self, user: User) -> Channel:
        return self.world.dm_channel(user)

    def channel(self, channel_id: int) -> Channel | None:
        return self.world.channel(channel_id)

    # -- application commands --------------------------------------------------------------

    def set_commands(self, guild_id: int | None, payloads: list[dict[str, Any]]) -> list[RegisteredCommand]:
        """Bulk overwrite: keep ids of commands that still exist by (type, name), as Discord does."""
        previous = {(c.type, c.name): c.id for c in self.commands.get(guild_id, [])}
        registered = []
        for payload in payloads:
            key = (int(payload.get("type") or 1), str(payload["name"]))
            command_id = previous.get(key) or self.next_id()
            registered.append(RegisteredCommand(id=command_id, guild_id=guild_id, payload=dict(payload)))
        self.commands[guild_id] = registered
        return registered

    def all_commands(self) -> list[RegisteredCommand]:
        return [command for commands in self.commands.values() for command in commands]

    # -- interactions -------------------------------------------------------------------------

    def new_interaction(
        self, *, type: InteractionType, command_name: str, user: User, channel: Channel
    ) -> InteractionResult:
        interaction = InteractionResult(
            id=self.next_id(),
            token=f"aW50ZXJhY3Rpb24.{secrets.token_urlsafe(48)}",
            type=type,
            command_name=command_name,
            user=user,
            channel=channel,
            created_monotonic=time.monotonic(),
            changes=self.changes,
            _messages=self.messages,
        )
        self.interactions[interaction.id] = interaction
        return interaction

    def interaction_by_token(self, token: str) -> InteractionResult | None:
        return next((i for i in self.interactions.values() if i.token == token), None)


def _snowflakes_as_strings(reference: dict[str, Any] | None) -> dict[str, Any] | None:
    """Discord echoes a message_reference with its ids as strings, however the client sent them."""
    if reference is None:
        return None
    return {k: str(v) if k.endswith("_id") and v is not None else v for k, v in reference.items()}
