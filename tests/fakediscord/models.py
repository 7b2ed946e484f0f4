"""The things the fake Discord knows about: users, roles, channels, the guild, messages and commands.

Plain data with no IO. Field names follow the Discord API so payload builders stay obvious.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, IntFlag
from typing import Any

# Discord snowflakes count milliseconds from 2015-01-01T00:00:00Z
# (https://discord.com/developers/docs/reference#snowflakes).
DISCORD_EPOCH_MS = 1_420_070_400_000


class Intent(IntFlag):
    """Gateway intents the fake looks at (https://discord.com/developers/docs/events/gateway#gateway-intents)."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15


PRIVILEGED_INTENTS = Intent.GUILD_MEMBERS | Intent.GUILD_PRESENCES | Intent.MESSAGE_CONTENT


class Permission(IntFlag):
    """The permission bits the fake's guild uses (https://discord.com/developers/docs/topics/permissions)."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CHANGE_NICKNAME = 1 << 26
    USE_APPLICATION_COMMANDS = 1 << 31


ALL_PERMISSIONS = (1 << 51) - 1

# What a fresh guild's @everyone role can do, roughly Discord's default.
EVERYONE_PERMISSIONS = (
    Permission.CREATE_INSTANT_INVITE
    | Permission.ADD_REACTIONS
    | Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.EMBED_LINKS
    | Permission.ATTACH_FILES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.USE_EXTERNAL_EMOJIS
    | Permission.CHANGE_NICKNAME
    | Permission.USE_APPLICATION_COMMANDS
)


class ChannelType(IntEnum):
    GUILD_TEXT = 0
    DM = 1


class MessageType(IntEnum):
    DEFAULT = 0
    REPLY = 19
    CHAT_INPUT_COMMAND = 20


class MessageFlag(IntFlag):
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7


class InteractionType(IntEnum):
    APPLICATION_COMMAND = 2
    APPLICATION_COMMAND_AUTOCOMPLETE = 4


class CallbackType(IntEnum):
    """Interaction callback types the fake accepts."""

    CHANNEL_MESSAGE_WITH_SOURCE = 4
    DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
    APPLICATION_COMMAND_AUTOCOMPLETE_RESULT = 8
    MODAL = 9


class OptionType(IntEnum):
    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


def snowflake_at(moment_ms: int, increment: int = 0) -> int:
    """Build a snowflake for a Unix time in milliseconds; the low 12 bits carry the increment."""
    return ((moment_ms - DISCORD_EPOCH_MS) << 22) | (increment & 0xFFF)


class SnowflakeSource:
    """Hands out increasing snowflakes stamped with the current time, like Discord's id workers."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._last = 0

    def __call__(self) -> int:
        candidate = snowflake_at(int(time.time() * 1000), next(self._counter))
        # Several ids in one millisecond wrap the increment; keep them strictly increasing anyway.
        self._last = max(candidate, self._last + 1)
        return self._last


def iso_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 timestamp with offset, the format Discord uses for every timestamp field."""
    return (moment or datetime.now(UTC)).isoformat()


@dataclass(frozen=True)
class User:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    discriminator: str = "0"

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass(frozen=True)
class Role:
    id: int
    name: str
    permissions: int
    position: int = 0


@dataclass(frozen=True)
class Channel:
    id: int
    name: str
    type: ChannelType = ChannelType.GUILD_TEXT
    guild_id: int | None = None
    position: int = 0
    recipient_id: int | None = None  # DMs only

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass(frozen=True)
class Member:
    user: User
    role_ids: tuple[int, ...]
    joined_at: str


@dataclass(frozen=True)
class Guild:
    id: int
    name: str
    owner_id: int


@dataclass
class Message:
    """One message as Discord stores it, whoever created it."""

    id: int
    channel_id: int
    guild_id: int | None
    author: User
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None
    message_reference: dict[str, Any] | None = None
    mention_ids: list[int] = field(default_factory=list)
    mention_role_ids: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    flags: int = 0
    type: MessageType = MessageType.DEFAULT
    tts: bool = False
    nonce: str | int | None = None
    timestamp: str = field(default_factory=iso_timestamp)
    edited_timestamp: str | None = None
    # Set on messages that answer an interaction (Discord's `interaction_metadata`).
    interaction_metadata: dict[str, Any] | None = None
    webhook_id: int | None = None
    deleted: bool = False
    # The JSON body the bot sent to create this message (None for messages the test sent as a user).
    request: dict[str, Any] | None = None

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def interaction_id(self) -> int | None:
        return None if self.interaction_metadata is None else int(self.interaction_metadata["id"])


@dataclass(frozen=True)
class PostAttempt:
    """One request to create a message in a channel, whatever the fake answered."""

    channel_id: int
    at: float  # time.monotonic() when the request arrived
    status: int
    nonce: str | int | None = None


@dataclass(frozen=True)
class RegisteredCommand:
    """An application command as the bot synced it, with the id Discord assigned."""

    id: int
    guild_id: int | None
    payload: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.payload["name"])

    @property
    def type(self) -> int:
        return int(self.payload.get("type", 1))

    @property
    def options(self) -> list[dict[str, Any]]:
        return list(self.payload.get("options") or [])

    def option(self, name: str) -> dict[str, Any]:
        """The option schema called `name` at the top level of this command."""
        for option in self.options:
            if option["name"] == name:
                return option
        raise KeyError(f"/{self.name} has no option {name!r}; it has {[o['name'] for o in self.options]}")


@dataclass(frozen=True)
class InteractionResponse:
    """One thing the bot did in answer to an interaction, in the order it happened.

    `kind` is "callback" (POST .../callback; `type` holds the callback type), "followup"
    (POST /webhooks/{app}/{token}), "edit" (PATCH of @original or a followup) or "delete".
    """

    kind: str
    data: dict[str, Any]
    type: int | None = None
    message_id: int | None = None

    @property
    def content(self) -> str | None:
        value = self.data.get("content")
        return None if value is None else str(value)

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.data.get("embeds") or [])

    @property
    def allowed_mentions(self) -> dict[str, Any] | None:
        return self.data.get("allowed_mentions")

    @property
    def choices(self) -> list[dict[str, Any]]:
        return list(self.data.get("choices") or [])

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.data.get("flags") or 0) & MessageFlag.EPHEMERAL)

    @property
    def deferred(self) -> bool:
        return self.kind == "callback" and self.type == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
