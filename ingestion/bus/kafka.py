"""Kafka behind the bus seam: one topic keyed by wiki, one consumer group for all sinks.

Offsets are committed only after the sink's PostgreSQL commit, so a sink that dies re-reads at most its
uncommitted batch (stored again as duplicates, which the primary key drops). Kafka has no publish-side
deduplication here: a publish retried after a lost acknowledgement may be stored twice on the topic, and
PostgreSQL's primary key on `event_id` makes that harmless.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from ingestion.bus.engine import BusLag, BusOptions, BusUnavailable, OutgoingMessage, ReceivedMessage
from ingestion.bus.grouping import EVENTS_HEADER, header_events
from ingestion.bus.naming import (
    CONSUMER_NAME,
    TOPIC,
    message_source,
    stream_replicas,
)
from teston.core.bus_address import BusAddress, BusEngine

log = logging.getLogger(__name__)

_RETRY_PAUSE = 0.5
_SETUP_ATTEMPTS = 60
_ASSIGNMENT_WAIT = 15.0


async def ensure_topic(address: BusAddress, options: BusOptions) -> None:
    """Create the topic (partitions from BUS_PARTITIONS, replication min(3, brokers)) unless it exists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=list(address.servers))
    for attempt in range(_SETUP_ATTEMPTS):
        try:
            await admin.start()
            break
        except KafkaError as exc:
            if attempt + 1 == _SETUP_ATTEMPTS:
                raise BusUnavailable(f"cannot reach Kafka at {','.join(address.servers)}: {exc}") from exc
            await asyncio.sleep(_RETRY_PAUSE)
    try:
        replicas = options.replicas or stream_replicas(address.cluster_size)
        await admin.create_topics([NewTopic(TOPIC, options.partitions, replicas)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


def _headers(message: OutgoingMessage) -> list[tuple[str, bytes]] | None:
    """A group's event count (a lone event's record has no header, as before)."""
    return [(EVENTS_HEADER, str(message.events).encode())] if message.events > 1 else None


class KafkaPublisher:
    """Sends events keyed by wiki with `acks=all` and waits for every acknowledgement."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    @classmethod
    async def connect(cls, address: BusAddress, options: BusOptions) -> KafkaPublisher:
        await ensure_topic(address, options)
        producer = AIOKafkaProducer(
            bootstrap_servers=list(address.servers),
            acks="all",
            linger_ms=5,
            request_timeout_ms=int(options.publish_timeout.total_seconds() * 1000),
        )
        await producer.start()
        return cls(producer)

    async def publish(self, messages: Sequence[OutgoingMessage], give_up: threading.Event) -> int:
        pending = list(messages)
        attempt = 0
        while pending:
            futures = []
            failed: list[OutgoingMessage] = []
            for index, message in enumerate(pending):
                try:
                    futures.append(
                        await self._producer.send(
                            TOPIC,
                            value=message.payload,
                            key=message.wiki.encode(),
                            headers=_headers(message),
                        )
                    )
                except KafkaError as exc:
                    log.warning("publishing to Kafka failed (%s)", exc)
                    failed.extend(pending[index:])
                    break
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = [m for m, r in zip(pending, results, strict=False) if isinstance(r, Exception)] + failed
            if failed:
                attempt += 1
                if give_up.is_set():
                    raise BusUnavailable(f"Kafka did not acknowledge {len(failed)} events")
                log.warning("%d events not acknowledged by Kafka; sending them again", len(failed))
                await asyncio.sleep(min(_RETRY_PAUSE * attempt, 5.0))
            pending = failed
        return 0  # Kafka does not say; PostgreSQL counts the duplicates

    async def close(self) -> None:
        await self._producer.stop()


class KafkaConsumer:
    """One member of the sinks' consumer group; offsets committed only when told the batch is stored."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self._lag = BusLag(0, 0.0)

    @classmethod
    async def connect(cls, address: BusAddress, options: BusOptions) -> KafkaConsumer:
        await ensure_topic(address, options)
        consumer = AIOKafkaConsumer(
            TOPIC,
            bootstrap_servers=list(address.servers),
            group_id=CONSUMER_NAME,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        # Joining the group takes a few seconds; until then a fetch returns nothing, which an idle sink
        # (`--idle-exit`) would take for a drained topic. A sink beyond the partition count gets none.
        for _ in range(int(_ASSIGNMENT_WAIT / _RETRY_PAUSE)):
            if consumer.assignment():
                break
            await asyncio.sleep(_RETRY_PAUSE)
        return cls(consumer)

    async def fetch(self, max_messages: int, max_wait: float) -> list[ReceivedMessage]:
        batches = await self._consumer.getmany(timeout_ms=int(max_wait * 1000), max_records=max_messages)
        records = [record for partition in batches.values() for record in partition]
        received = [self._received(record) for record in records]
        pending = 0
        for partition, taken in batches.items():
            highwater = self._consumer.highwater(partition)
            if highwater is not None and taken:
                pending += max(highwater - taken[-1].offset - 1, 0)
        times = [r.published_at for r in received if r.published_at is not None]
        age = (datetime.now(UTC) - min(times)).total_seconds() if times else 0.0
        self._lag = BusLag(pending, max(age, 0.0))
        return received

    @staticmethod
    def _received(record: ConsumerRecord[bytes, bytes]) -> ReceivedMessage:
        published = datetime.fromtimestamp(record.timestamp / 1000, UTC) if record.timestamp > 0 else None
        return ReceivedMessage(
            payload=record.value or b"",
            source=message_source(BusEngine.KAFKA, f"{record.topic}/{record.partition}", record.offset),
            published_at=published,
            handle=record,
            events=header_events(dict(record.headers or ()).get(EVENTS_HEADER)),
        )

    async def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for message in messages:
            record = message.handle
            partition = TopicPartition(record.topic, record.partition)
            offsets[partition] = max(offsets.get(partition, 0), record.offset + 1)
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # The group rebalanced meanwhile: the partition's new owner reads these again, and PostgreSQL's
            # primary key drops the copies.
            log.warning("committing offsets failed (%s); the batch will be delivered again", exc)

    def lag(self) -> BusLag:
        return self._lag

    async def close(self) -> None:
        await self._consumer.stop()
