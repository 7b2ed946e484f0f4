"""The seam between TestON and a bus engine: what the publisher and the sink need, and nothing more.

`open_publisher` and `open_consumer` pick the engine a `BUS_URL` names. The engines' client libraries
(`nats-py`, `aiokafka`, the `bus` extra) are imported only when that engine is used, so the direct path
runs without them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from teston.core.bus_address import BusAddress, BusEngine
from teston.core.errors import IngestionError


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """Valid events of one wiki to publish: their wiki (subject / key), the message id (a lone event's
    `meta.id`; see `ingestion.bus.grouping`) and their raw JSON, one event per line."""

    wiki: str
    message_id: str
    payload: bytes
    events: int = 1


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message a sink fetched: its payload, where it came from (for quarantine), the engine's handle,
    and how many events its header says it holds."""

    payload: bytes
    source: str
    published_at: datetime | None
    handle: Any
    events: int = 1


@dataclass(frozen=True, slots=True)
class BusLag:
    """How far the sinks are behind: messages not yet consumed and the age of the oldest one in hand."""

    pending: int
    oldest_age_seconds: float


@dataclass(frozen=True, slots=True)
class BusOptions:
    """The stream's limits and the delivery timings, from the `BUS_*` settings."""

    duplicate_window: timedelta = timedelta(minutes=2)
    max_age: timedelta | None = None
    max_bytes: int | None = None
    replicas: int | None = None  # None: min(3, servers in BUS_URL)
    partitions: int = 3
    ack_wait: timedelta = timedelta(seconds=30)
    # A publish not acknowledged within this is sent again (same message id, so never stored twice).
    publish_timeout: timedelta = timedelta(seconds=5)


class BusUnavailable(IngestionError):
    """The bus could not take the events and the run was asked to stop: nothing after the cursor is lost."""


class BusPublisher(Protocol):
    """The ingester's side: publish a batch and return once the bus has acknowledged every message."""

    async def publish(self, messages: Sequence[OutgoingMessage], give_up: threading.Event) -> int:
        """Publish until all are acknowledged; return how many events the bus already had (duplicates)."""
        ...

    async def close(self) -> None: ...


class BusConsumer(Protocol):
    """The sink's side: fetch a batch, acknowledge it once stored; redelivered if never acknowledged."""

    async def fetch(self, max_messages: int, max_wait: float) -> list[ReceivedMessage]:
        """Up to `max_messages`: as soon as there are some, or none after `max_wait` seconds."""
        ...

    async def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None: ...

    def lag(self) -> BusLag:
        """The lag as of the last fetch."""
        ...

    async def close(self) -> None: ...


async def open_publisher(address: BusAddress, options: BusOptions) -> BusPublisher:
    """Connect to the bus, make sure its stream or topic exists, and return a publisher."""
    if address.engine is BusEngine.NATS:
        from ingestion.bus.jetstream import JetStreamPublisher

        return await JetStreamPublisher.connect(address, options)
    from ingestion.bus.kafka import KafkaPublisher

    return await KafkaPublisher.connect(address, options)


async def open_consumer(address: BusAddress, options: BusOptions) -> BusConsumer:
    """Connect to the bus as one of the sinks sharing the durable consumer (or consumer group)."""
    if address.engine is BusEngine.NATS:
        from ingestion.bus.jetstream import JetStreamConsumer

        return await JetStreamConsumer.connect(address, options)
    from ingestion.bus.kafka import KafkaConsumer

    return await KafkaConsumer.connect(address, options)
