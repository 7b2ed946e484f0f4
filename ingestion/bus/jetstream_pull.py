"""Pulling batches from a JetStream durable consumer into a buffer the sink takes from.

The client's own `PullSubscription.fetch` waits for each message of a batch with a task of its own, and once
the first message has come it waits until the batch is full or the request expires: a sink following a
quiet stream held each burst until its fetch timed out. `Puller` sends one pull request at a time (`batch`,
`expires`) to the consumer's `MSG.NEXT` subject with a reply inbox of its own; what the server sends there is
appended to a buffer. `take` returns as soon as a burst has arrived (nothing more for `_GATHER` seconds), and
what the request brings afterwards waits in the buffer for the next call.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time

from nats.aio.client import Client
from nats.aio.msg import Msg

from teston.core.waiting import wait_event

# After the first message, a pause this long ends the burst.
_GATHER = 0.01
# A request expires this much before the caller stops waiting, so that its end is seen.
_EXPIRY_MARGIN = 0.05
_STATUS = "Status"
_HEARTBEAT = "100"


class Puller:
    """Pull requests and their deliveries for one sink; `take` returns up to a batch of messages."""

    def __init__(self, client: Client, stream: str, consumer: str) -> None:
        self._client = client
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = client.new_inbox()
        self._buffer: collections.deque[Msg] = collections.deque()
        self._arrived = asyncio.Event()
        self._owed = 0  # messages the open request may still bring
        self._open_until = 0.0  # when it expires (monotonic)

    async def start(self) -> None:
        await self._client.subscribe(self._inbox, cb=self._delivered)

    async def _delivered(self, message: Msg) -> None:
        status = message.headers.get(_STATUS) if message.headers and not message.data else None
        if status is not None:
            if status != _HEARTBEAT:
                # 404 no messages, 408 request expired, 409 (leader change, consumer gone…): it is over.
                self._owed = 0
                self._arrived.set()
            return
        self._buffer.append(message)
        self._owed -= 1
        self._arrived.set()

    async def _request(self, batch: int, wait: float) -> None:
        expires = max(wait - _EXPIRY_MARGIN, _GATHER)
        self._owed = batch
        self._open_until = time.monotonic() + expires
        request = json.dumps({"batch": batch, "expires": int(expires * 1e9)}).encode()
        await self._client.publish(self._subject, request, reply=self._inbox)

    async def _wait(self, seconds: float) -> bool:
        """Whether anything arrived (a message or a request's end) within `seconds`."""
        self._arrived.clear()
        return await wait_event(self._arrived, seconds)

    async def take(self, max_messages: int, max_wait: float) -> list[Msg]:
        """Up to `max_messages`: as soon as a burst has arrived, or none after `max_wait` seconds."""
        deadline = time.monotonic() + max_wait
        while not self._buffer:
            now = time.monotonic()
            if deadline - now < _GATHER:
                return []
            if self._owed <= 0 or now >= self._open_until:
                await self._request(max_messages, deadline - now)
            await self._wait(min(deadline, self._open_until) - now)
        while len(self._buffer) < max_messages and self._owed > 0 and await self._wait(_GATHER):
            pass
        count = min(max_messages, len(self._buffer))
        return [self._buffer.popleft() for _ in range(count)]
