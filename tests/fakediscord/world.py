"""The fake's guilds and the people in them, and how their permissions add up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from .models import (
    ALL_PERMISSIONS,
    EVERYONE_PERMISSIONS,
    Channel,
    ChannelType,
    Guild,
    Member,
    Permission,
    Role,
    User,
    iso_timestamp,
    snowflake_at,
)

# Fixed ids keep failures readable and stable across runs; they are valid snowflakes from 2021.
_BASE_MS = int(datetime(2021, 1, 1, tzinfo=UTC).timestamp() * 1000)
_JOINED_AT = iso_timestamp(datetime(2021, 1, 2, tzinfo=UTC))


def _fixed_id(n: int) -> int:
    return snowflake_at(_BASE_MS + n * 1000)


@dataclass(frozen=True)
class Users:
    bot: User
    alice: User
    moderator: User
    owner: User

    def all(self) -> tuple[User, ...]:
        return (self.bot, self.alice, self.moderator, self.owner)


@dataclass(frozen=True)
class Roles:
    everyone: Role
    moderators: Role

    def all(self) -> tuple[Role, ...]:
        return (self.everyone, self.moderators)


@dataclass(frozen=True)
class Channels:
    general: Channel
    moderation: Channel

    def all(self) -> tuple[Channel, ...]:
        return (self.general, self.moderation)


class World:
    """A guild with an owner, a moderator holding Manage Server, a normal member (alice) and the bot.

    `add_guild` adds more guilds (for sharding): the same people are members of each, with the same
    guild-wide permissions, and each has one text channel, `general`.
    """

    def __init__(self) -> None:
        self.guild = Guild(id=_fixed_id(1), name="TestON Guild", owner_id=_fixed_id(13))
        self.users = Users(
            bot=User(id=_fixed_id(10), username="TestON", bot=True, discriminator="4242"),
            alice=User(id=_fixed_id(11), username="alice", global_name="Alice"),
            moderator=User(id=_fixed_id(12), username="moderator", global_name="Mo Derator"),
            owner=User(id=_fixed_id(13), username="owner", global_name="Owner"),
        )
        # Discord gives @everyone the guild's own id.
        self.roles = Roles(
            everyone=Role(id=self.guild.id, name="@everyone", permissions=EVERYONE_PERMISSIONS, position=0),
            moderators=Role(
                id=_fixed_id(20), name="Moderators", permissions=Permission.MANAGE_GUILD, position=1
            ),
        )
        self.channels = Channels(
            general=Channel(id=_fixed_id(30), name="general", guild_id=self.guild.id, position=0),
            moderation=Channel(id=_fixed_id(31), name="moderation", guild_id=self.guild.id, position=1),
        )
        self.members: dict[int, Member] = {
            user.id: Member(user=user, role_ids=roles, joined_at=_JOINED_AT)
            for user, roles in (
                (self.users.bot, ()),
                (self.users.alice, ()),
                (self.users.moderator, (self.roles.moderators.id,)),
                (self.users.owner, ()),
            )
        }
        self._dm_channels: dict[int, Channel] = {}
        self._next_dm = 40
        self.deleted_channel_ids: set[int] = set()
        # Channels where the bot may not send messages (a channel permission overwrite, in Discord).
        self.muted_channel_ids: set[int] = set()
        self._more_guilds: dict[int, tuple[Guild, Channel]] = {}
        self._next_channel = 100

    @property
    def application_id(self) -> int:
        # Applications created since 2020 share their id with their bot user.
        return self.users.bot.id

    def add_guild(self, guild_id: int, name: str) -> Channel:
        """Add guild `guild_id` with everyone in it; return its `general` channel."""
        if guild_id == self.guild.id or guild_id in self._more_guilds:
            raise ValueError(f"guild {guild_id} already exists")
        guild = Guild(id=guild_id, name=name, owner_id=self.guild.owner_id)
        general = Channel(id=_fixed_id(self._next_channel), name="general", guild_id=guild_id, position=0)
        self._next_channel += 1
        self._more_guilds[guild_id] = (guild, general)
        return general

    def guilds(self) -> tuple[Guild, ...]:
        return (self.guild, *(guild for guild, _ in self._more_guilds.values()))

    def guild_by_id(self, guild_id: int) -> Guild | None:
        return next((g for g in self.guilds() if g.id == guild_id), None)

    def guild_roles(self, guild: Guild) -> tuple[Role, ...]:
        """The roles of `guild`: the first guild's, or only @everyone (whose id is the guild's)."""
        if guild.id == self.guild.id:
            return self.roles.all()
        return (Role(id=guild.id, name="@everyone", permissions=EVERYONE_PERMISSIONS, position=0),)

    def guild_channels(self, guild: Guild) -> tuple[Channel, ...]:
        if guild.id == self.guild.id:
            return self.channels.all()
        return (self._more_guilds[guild.id][1],)

    def user(self, user_id: int) -> User | None:
        return next((u for u in self.users.all() if u.id == user_id), None)

    def role(self, role_id: int) -> Role | None:
        return next((r for r in self.roles.all() if r.id == role_id), None)

    def channel(self, channel_id: int) -> Channel | None:
        if channel_id in self.deleted_channel_ids:
            return None
        found = next((c for c in self.channels.all() if c.id == channel_id), None)
        found = found or next((c for _, c in self._more_guilds.values() if c.id == channel_id), None)
        return found or next((c for c in self._dm_channels.values() if c.id == channel_id), None)

    def dm_channel(self, user: User) -> Channel:
        """The DM channel between the bot and `user`, opened on first use."""
        if user.id not in self._dm_channels:
            self._dm_channels[user.id] = Channel(
                id=_fixed_id(self._next_dm), name="", type=ChannelType.DM, recipient_id=user.id
            )
            self._next_dm += 1
        return self._dm_channels[user.id]

    def permissions(self, user: User) -> int:
        """Guild-wide permissions of `user` (no channel overwrites are modelled)."""
        if user.id == self.guild.owner_id:
            return ALL_PERMISSIONS
        member = self.members.get(user.id)
        if member is None:
            return 0
        total = self.roles.everyone.permissions
        for role_id in member.role_ids:
            role = self.role(role_id)
            if role is not None:
                total |= role.permissions
        if total & Permission.ADMINISTRATOR:
            return ALL_PERMISSIONS
        return int(total)
