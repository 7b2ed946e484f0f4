"""Wiring the real discord.py client to a FakeDiscord.

discord.py has no per-client endpoint setting, so `pointed_at` swaps two class attributes for
the duration of a block and puts them back afterwards:

* `discord.http.Route.BASE` — prefix of every REST and webhook URL (the client reads it when a
  Route is built, so the patch takes effect for every request made inside the block);
* `discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY` — where a non-sharded client opens its
  first websocket (2.x connects there directly instead of asking GET /gateway/bot); later
  reconnects follow READY's `resume_gateway_url`, which the fake sets to itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from .server import FakeDiscord

ClientT = TypeVar("ClientT", bound=discord.Client)


@contextmanager
def pointed_at(fake: FakeDiscord) -> Iterator[None]:
    """Send discord.py's REST and gateway traffic to `fake` inside the block."""
    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = fake.base_url
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


@asynccontextmanager
async def running(
    client: ClientT, fake: FakeDiscord, *, ready_timeout: float = 5.0
) -> AsyncIterator[ClientT]:
    """Log `client` in to `fake`, connect it and wait for on_ready; close it cleanly on exit.

    Login runs `setup_hook` (where bots usually sync their command tree). on_ready comes
    `guild_ready_timeout` seconds (discord.py's default is 2) after the guild arrives, so pass a
    small `guild_ready_timeout` to the client in tests. The client runs with reconnect=False so
    an unexpected gateway close fails the test instead of backing off and retrying; a close for
    disallowed intents raises PrivilegedIntentsRequired, as `Client.start` does.
    """
    connection: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(ready_timeout):
            await client.login(fake.token)
        connection = asyncio.create_task(client.connect(reconnect=False), name="discord.py gateway")
        ready = asyncio.create_task(client.wait_until_ready(), name="discord.py ready")
        done, _ = await asyncio.wait(
            {connection, ready}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if connection in done:
                _raise_connection_error(connection)
                raise RuntimeError("discord.py's gateway connection ended before on_ready")
            raise TimeoutError(
                f"discord.py was not ready within {ready_timeout}s (is guild_ready_timeout small?)"
            )
        yield client
    except BaseException:
        await _stop(client, connection, ready_timeout)
        raise
    else:
        await _stop(client, connection, ready_timeout)
        if connection is not None:
            _raise_connection_error(connection)


async def _stop(client: discord.Client, connection: asyncio.Task[None] | None, timeout: float) -> None:
    await client.close()
    if connection is None:
        return
    await asyncio.wait({connection}, timeout=timeout)
    if not connection.done():
        connection.cancel()
        await asyncio.wait({connection})
    elif not connection.cancelled():
        connection.exception()  # mark it retrieved; the caller decides whether to raise it


def _raise_connection_error(connection: asyncio.Task[None]) -> None:
    """Re-raise whatever ended the gateway connection, if anything did."""
    if connection.cancelled():
        return
    error = connection.exception()
    if isinstance(error, discord.ConnectionClosed) and error.code == 4014:
        raise discord.PrivilegedIntentsRequired(error.shard_id) from error
    if error is not None:
        raise error
