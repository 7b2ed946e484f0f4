"""The bot's LISTEN connection: the database's notices (`teston.core.notices`) handed to subscribers.

One connection serves every subscriber (the live feeds, the read cache). A subscriber hears `following`
once LISTEN has taken effect (anything may have changed before: read again), each notice as it arrives,
and `lost` when the connection is gone; the connection is opened again after a pause.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import psycopg
from psycopg import AsyncConnection

from teston.core.notices import CHANGES_CHANNEL, ROLLUPS_CHANNEL

log = logging.getLogger(__name__)

# Opens the connection to LISTEN on (autocommit, so that notifications arrive at once).
Listen = Callable[[], Awaitable[AsyncConnection[Any]]]

CHANNELS = (CHANGES_CHANNEL, ROLLUPS_CHANNEL)
RETRY_AFTER_FAILURE = 5.0


class Subscriber(Protocol):
    def following(self) -> None:
        """Notices flow from now on; what happened before is unknown."""

    def notified(self, channel: str, payload: str) -> None:
        """A notice of `channel` arrived."""

    def lost(self) -> None:
        """The connection is gone: no notice arrives until the next `following`."""


class Notifications:
    """Follows `channels` on connections from `listen` until cancelled, telling every subscriber."""

    def __init__(
        self,
        listen: Listen,
        subscribers: Sequence[Subscriber] = (),
        *,
        channels: Sequence[str] = CHANNELS,
        retry_after_failure: float = RETRY_AFTER_FAILURE,
    ) -> None:
        self._listen = listen
        self.subscribers = list(subscribers)
        self._channels = tuple(channels)
        self.retry_after_failure = retry_after_failure

    async def run(self) -> None:
        while True:
            try:
                conn = await self._listen()
                async with conn:
                    for channel in self._channels:
                        await conn.execute(f"LISTEN {channel}")
                    for subscriber in self.subscribers:
                        subscriber.following()
                    async for notice in conn.notifies():
                        for subscriber in self.subscribers:
                            subscriber.notified(notice.channel, notice.payload)
            except (psycopg.Error, OSError) as error:
                log.warning(
                    "lost the notification connection (%s); opening it again in %.0f s",
                    error,
                    self.retry_after_failure,
                )
            finally:
                for subscriber in self.subscribers:
                    subscriber.lost()
            await asyncio.sleep(self.retry_after_failure)
