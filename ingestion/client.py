"""The live EventStreams connection: identification, resume by `Last-Event-ID`, reconnect with backoff.

Wikimedia's User-Agent policy (https://meta.wikimedia.org/wiki/User-Agent_policy) asks every client to
name itself and a way to reach its operator, and EventStreams limits concurrent connections per client,
so one `EventStreamClient` holds at most one connection and closes it before opening the next.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import aiohttp

from ingestion.backoff import Failure, ReconnectPolicy, classify_status, parse_retry_after
from ingestion.sources import Delivery
from ingestion.sse import SSEDecoder

log = logging.getLogger(__name__)


def user_agent(product: str) -> str:
    """`TestON/<version> (<contact>) aiohttp/<version>`, the form Wikimedia's policy asks for."""
    return f"{product} aiohttp/{aiohttp.__version__}"


def since_parameter(since: datetime) -> str:
    """The `?since=` value EventStreams accepts: an ISO 8601 UTC time."""
    return since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventStreamClient:
    """Follows one SSE stream forever, reconnecting after every failure, yielding message payloads."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        user_agent: str,
        since: datetime | None = None,
        policy: ReconnectPolicy | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        rng: random.Random | None = None,
        on_reconnect: Callable[[Failure], None] | None = None,
    ) -> None:
        self._session = session
        self.url = url
        self._user_agent = user_agent
        self._since = since
        self._policy = policy or ReconnectPolicy()
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._rng = rng or random.Random()
        self._on_reconnect = on_reconnect
        self._connection = asyncio.Lock()
        self.connected = False
        self._bytes = 0

    @property
    def stream(self) -> str:
        return self.url

    @property
    def live(self) -> bool:
        return True

    @property
    def total_bytes(self) -> int | None:
        return None

    @property
    def bytes_read(self) -> int:
        return self._bytes

    def origin(self, record: int) -> str:
        return self.url

    def _request_headers(self, last_event_id: str | None) -> dict[str, str]:
        headers = {
            "User-Agent": self._user_agent,
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
        }
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        return headers

    async def deliveries(self, position: str | None) -> AsyncIterator[Delivery]:
        """Payloads of `message` events from `position` on (or from `since`, or from now), forever."""
        last_event_id = position or None
        retry_ms: int | None = None
        attempt = 0
        while True:
            failure: Failure = Failure.DISCONNECTED
            retry_after: float | None = None
            async with self._connection:
                # EventStreams accepts `since` only when there is no Last-Event-ID to resume from.
                params = (
                    {"since": since_parameter(self._since)} if self._since and not last_event_id else None
                )
                resumed = bool(last_event_id or params)
                try:
                    async with self._session.get(
                        self.url,
                        headers=self._request_headers(last_event_id),
                        params=params,
                        timeout=self._timeout,
                    ) as response:
                        refused = classify_status(response.status)
                        if refused is not None:
                            failure = refused
                            retry_after = parse_retry_after(response.headers.get("Retry-After"))
                            log.warning("stream refused the connection: HTTP %d", response.status)
                        else:
                            self.connected = True
                            log.info("connected to %s (Last-Event-ID %s)", self.url, last_event_id or "-")
                            decoder = SSEDecoder()
                            async for chunk in response.content.iter_any():
                                self._bytes += len(chunk)
                                events = decoder.feed(chunk)
                                if decoder.retry_ms is not None:
                                    retry_ms = decoder.retry_ms
                                if not events:
                                    continue
                                payloads: list[bytes | str] = []
                                for event in events:
                                    if event.event == "message" and event.data:
                                        payloads.append(event.data)
                                    elif event.data:
                                        log.warning("ignoring %r event: %.200s", event.event, event.data)
                                # Per the SSE spec every dispatched event carries the last event ID
                                # buffer, so the newest event's id is where to resume after it.
                                last_event_id = events[-1].id or last_event_id
                                if payloads:
                                    attempt = 0
                                    yield Delivery(payloads, last_event_id, resumed=resumed)
                                    resumed = False
                            # Per the SSE spec a half-received event at the end of a connection is dropped;
                            # the resume re-sends it.
                            log.info("stream ended by the server")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("stream connection lost: %s", exc or type(exc).__name__)
                finally:
                    self.connected = False
            attempt += 1
            delay = self._policy.delay(
                attempt, failure, retry_ms=retry_ms, retry_after=retry_after, rng=self._rng
            )
            if self._on_reconnect is not None:
                self._on_reconnect(failure)
            log.info("reconnecting in %.2fs (%s, attempt %d)", delay, failure.value, attempt)
            await asyncio.sleep(delay)
