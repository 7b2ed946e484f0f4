"""JSON payloads in the shapes the Discord API documents, built from the fake's models.

Snowflakes and permission sets are strings on the wire, as Discord sends them.
"""

from __future__ import annotations

from typing import Any

from .models import Channel, ChannelType, Guild, Intent, Member, Message, Role, User
from .world import World


def user_payload(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "username": user.username,
        "discriminator": user.discriminator,
        "global_name": user.global_name,
        "avatar": None,
        "bot": user.bot,
        "system": False,
        "public_flags": 0,
    }


def member_payload(
    member: Member, *, with_user: bool = True, permissions: int | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "nick": None,
        "avatar": None,
        "roles": [str(role_id) for role_id in member.role_ids],
        "joined_at": member.joined_at,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
    }
    if with_user:
        payload["user"] = user_payload(member.user)
    if permissions is not None:
        # Only interaction payloads carry the member's computed permissions.
        payload["permissions"] = str(permissions)
    return payload


def role_payload(role: Role) -> dict[str, Any]:
    return {
        "id": str(role.id),
        "name": role.name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": role.position,
        "permissions": str(role.permissions),
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def channel_payload(channel: Channel, world: World, *, permissions: int | None = None) -> dict[str, Any]:
    if channel.type is ChannelType.DM:
        recipient = world.user(channel.recipient_id or 0)
        payload: dict[str, Any] = {
            "id": str(channel.id),
            "type": int(channel.type),
            "last_message_id": None,
            "recipients": [user_payload(recipient)] if recipient else [],
        }
    else:
        payload = {
            "id": str(channel.id),
            "type": int(channel.type),
            "guild_id": str(channel.guild_id),
            "name": channel.name,
            "position": channel.position,
            "permission_overwrites": [],
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }
    if permissions is not None:
        payload["permissions"] = str(permissions)
    return payload


def ready_payload(
    world: World,
    *,
    session_id: str,
    resume_gateway_url: str,
    application_flags: int,
    guilds: tuple[Guild, ...],
    shard: tuple[int, int] | None = None,
) -> dict[str, Any]:
    return {
        "v": 10,
        "user": {**user_payload(world.users.bot), "verified": True, "mfa_enabled": False, "flags": 0},
        "guilds": [{"id": str(guild.id), "unavailable": True} for guild in guilds],
        "session_id": session_id,
        "session_type": "normal",
        "resume_gateway_url": resume_gateway_url,
        "private_channels": [],
        "relationships": [],
        "presences": [],
        "application": {"id": str(world.application_id), "flags": application_flags},
        **({"shard": list(shard)} if shard is not None else {}),
        "_trace": ["fakediscord"],
    }


def guild_create_payload(world: World, guild: Guild, *, intents: int) -> dict[str, Any]:
    # Per the GUILD_CREATE docs, without GUILD_PRESENCES the member list holds only the bot itself;
    # discord.py then asks for the rest with REQUEST_GUILD_MEMBERS if it has the members intent.
    if intents & Intent.GUILD_PRESENCES:
        members = list(world.members.values())
    else:
        members = [world.members[world.users.bot.id]]
    return {
        "id": str(guild.id),
        "name": guild.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(guild.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "features": [],
        "system_channel_id": str(world.guild_channels(guild)[0].id),
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "application_id": None,
        "vanity_url_code": None,
        "roles": [role_payload(role) for role in world.guild_roles(guild)],
        "emojis": [],
        "stickers": [],
        "joined_at": world.members[world.users.bot.id].joined_at,
        "large": False,
        "unavailable": False,
        "member_count": len(world.members),
        "members": [member_payload(member) for member in members],
        "channels": [channel_payload(channel, world) for channel in world.guild_channels(guild)],
        "threads": [],
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def guild_members_chunk_payload(
    world: World,
    *,
    guild_id: int,
    query: str,
    limit: int,
    user_ids: list[int] | None,
    nonce: str | None,
) -> dict[str, Any]:
    members = [
        member
        for member in world.members.values()
        if (user_ids is None or member.user.id in user_ids) and member.user.username.startswith(query)
    ]
    if limit:
        members = members[:limit]
    payload: dict[str, Any] = {
        "guild_id": str(guild_id),
        "members": [member_payload(member) for member in members],
        "chunk_index": 0,
        "chunk_count": 1,
        "not_found": [],
    }
    if nonce is not None:
        payload["nonce"] = nonce
    return payload


def message_payload(
    message: Message, world: World, *, by_id: dict[int, Message], with_content: bool = True
) -> dict[str, Any]:
    """A message object; `with_content=False` blanks what the MESSAGE_CONTENT intent guards."""
    payload: dict[str, Any] = {
        "id": str(message.id),
        "channel_id": str(message.channel_id),
        "author": user_payload(message.author),
        "content": message.content if with_content else "",
        "timestamp": message.timestamp,
        "edited_timestamp": message.edited_timestamp,
        "tts": message.tts,
        "mention_everyone": message.mention_everyone,
        "mentions": [],
        "mention_roles": [str(role_id) for role_id in message.mention_role_ids],
        "attachments": message.attachments if with_content else [],
        "embeds": message.embeds if with_content else [],
        "components": message.components if with_content else [],
        "pinned": False,
        "type": int(message.type),
        "flags": message.flags,
    }
    for user_id in message.mention_ids:
        mentioned = world.user(user_id)
        if mentioned is None:
            continue
        entry = user_payload(mentioned)
        member = world.members.get(user_id)
        if message.guild_id is not None and member is not None:
            entry["member"] = member_payload(member, with_user=False)
        payload["mentions"].append(entry)
    if message.nonce is not None:
        payload["nonce"] = message.nonce
    if message.webhook_id is not None:
        payload["webhook_id"] = str(message.webhook_id)
    if message.interaction_metadata is not None:
        payload["application_id"] = str(world.application_id)
        payload["interaction_metadata"] = message.interaction_metadata
    if message.message_reference is not None:
        payload["message_reference"] = message.message_reference
        referenced = by_id.get(int(message.message_reference.get("message_id") or 0))
        if referenced is not None and not referenced.deleted:
            payload["referenced_message"] = message_payload(
                referenced, world, by_id={}, with_content=with_content
            )
    return payload


def gateway_message_payload(
    message: Message, world: World, *, by_id: dict[int, Message], with_content: bool
) -> dict[str, Any]:
    """MESSAGE_CREATE/UPDATE data: the message plus guild_id and the author's member in guilds."""
    payload = message_payload(message, world, by_id=by_id, with_content=with_content)
    if message.guild_id is not None:
        payload["guild_id"] = str(message.guild_id)
        member = world.members.get(message.author.id)
        if member is not None and message.webhook_id is None:
            payload["member"] = member_payload(member, with_user=False)
    return payload


def interaction_payload(
    *,
    interaction_id: int,
    token: str,
    interaction_type: int,
    data: dict[str, Any],
    world: World,
    user: User,
    channel: Channel,
    locale: str,
) -> dict[str, Any]:
    """INTERACTION_CREATE data as Discord sends it for a slash command or an autocomplete request."""
    permissions = world.permissions(user)
    payload: dict[str, Any] = {
        "id": str(interaction_id),
        "application_id": str(world.application_id),
        "type": interaction_type,
        "data": data,
        "token": token,
        "version": 1,
        "locale": locale,
        "channel_id": str(channel.id),
        "channel": channel_payload(channel, world, permissions=permissions),
        "app_permissions": str(world.permissions(world.users.bot)),
        "entitlements": [],
        "attachment_size_limit": 10 * 1024 * 1024,
    }
    member = world.members.get(user.id)
    if channel.guild_id is not None and member is not None:
        payload["guild_id"] = str(channel.guild_id)
        payload["guild"] = {"id": str(channel.guild_id), "locale": "en-US", "features": []}
        payload["guild_locale"] = "en-US"
        payload["member"] = member_payload(member, permissions=permissions)
        payload["authorizing_integration_owners"] = {"0": str(channel.guild_id)}
        payload["context"] = 0  # GUILD
    else:
        payload["user"] = user_payload(user)
        payload["context"] = 1  # BOT_DM
    return payload
