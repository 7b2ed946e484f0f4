"""Posting a feed's messages with discord.py: embeds, a nonce Discord enforces, no mentions."""

from __future__ import annotations

import discord

from bot.feeds.poster import ChannelGone, NotAllowed
from bot.messages import Message

NO_MENTIONS = discord.AllowedMentions.none()


class DiscordChannels:
    """`bot.feeds.poster.Channels` over a logged-in discord.py client (its REST session and 429 handling)."""

    def __init__(self, client: discord.Client) -> None:
        self._client = client

    async def post(self, channel_id: int, message: Message, *, nonce: str) -> None:
        channel = self._client.get_partial_messageable(channel_id)
        embeds = [discord.Embed.from_dict(embed.to_dict()) for embed in message.embeds]
        try:
            # discord.py sends `enforce_nonce: true` with every nonce.
            await channel.send(
                content=message.content or None, embeds=embeds, nonce=nonce, allowed_mentions=NO_MENTIONS
            )
        except discord.NotFound as error:
            raise ChannelGone(str(error)) from error
        except discord.Forbidden as error:
            raise NotAllowed(str(error)) from error
