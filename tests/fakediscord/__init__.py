"""A local fake Discord (gateway websocket + REST API) that drives the real discord.py client in tests.

    async with FakeDiscord.start() as fake:
        with pointed_at(fake):
            async with running(MyBot(guild_ready_timeout=0.05), fake) as bot:
                await fake.send_user_message("!ping", author=fake.users.alice)
                [reply] = await fake.wait_for_bot_messages(fake.channels.general, timeout=2)

server.FakeDiscord is the test-facing API; discordpy holds the wiring to discord.py;
pytest_plugin offers the same as a `fake_discord` fixture; `python -m tests.fakediscord.launch` runs
TestON's command line pointed at a fake (a bot in a process of its own). `fake.add_guild` adds guilds;
with a sharded bot each guild's events go to the session of its shard only.
`FakeDiscord.start(channel_rate_limit=DISCORD_CHANNEL_LIMIT)` enforces Discord's limit on posting in a
channel (429 with `retry_after`) and counts the 429s and any the client ignored.
"""

from .discordpy import pointed_at, running
from .errors import ApiError
from .models import (
    CallbackType,
    Channel,
    Intent,
    InteractionResponse,
    Message,
    Permission,
    PostAttempt,
    RegisteredCommand,
    Role,
    User,
)
from .ratelimits import DISCORD_CHANNEL_LIMIT, ChannelRateLimits
from .server import FakeDiscord
from .slash import OptionValue, SlashInvocationError
from .state import InteractionResult

__all__ = [
    "DISCORD_CHANNEL_LIMIT",
    "ApiError",
    "CallbackType",
    "Channel",
    "ChannelRateLimits",
    "FakeDiscord",
    "Intent",
    "InteractionResponse",
    "InteractionResult",
    "Message",
    "OptionValue",
    "Permission",
    "PostAttempt",
    "RegisteredCommand",
    "Role",
    "SlashInvocationError",
    "User",
    "pointed_at",
    "running",
]
