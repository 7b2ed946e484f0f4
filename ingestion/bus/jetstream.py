"""NATS JetStream behind the bus seam: one file-backed stream, one durable pull consumer for all sinks.

Durability comes from JetStream itself: the stream keeps `min(3, servers)` replicas, a publish is
acknowledged once a quorum has it, and the `Nats-Msg-Id` header (the event's `meta.id`, or a group's digest
of them) lets the stream drop a message sent again within the duplicate window (a publish retried after a
leader change, say).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from ingestion.bus.engine import BusLag, BusOptions, BusUnavailable, OutgoingMessage, ReceivedMessage
from ingestion.bus.grouping import EVENTS_HEADER, header_events
from ingestion.bus.jetstream_pull import Puller
from ingestion.bus.naming import (
    CONSUMER_NAME,
    MESSAGE_ID_HEADER,
    STREAM_NAME,
    SUBJECT_PREFIX,
    message_source,
    stream_replicas,
    stream_subjects,
    subject_for,
)
from teston.core.bus_address import BusAddress, BusEngine
from teston.core.waiting import wait_event

log = logging.getLogger(__name__)

# A new stream leader is usually elected within a few seconds; until then requests fail and are retried.
_SETUP_DEADLINE = 60.0
_RETRY_PAUSE = 0.5
_MAX_ACK_PENDING = 100_000
_NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, TimeoutError)
# Messages sent and not yet acknowledged, at most (the client's own default for `publish_async`).
_IN_FLIGHT = 4000
_NO_RESPONDERS = "503"
_EXPECTED_STREAM = api.Header.EXPECTED_STREAM.value


async def _connect(address: BusAddress, name: str) -> Client:
    """Connect to any of the servers, retrying for a while (a cluster starting beside TestON, say)."""

    async def report(exc: Exception) -> None:
        # nats-py prints a traceback for every failed attempt unless given a callback.
        log.warning("NATS: %s", exc or type(exc).__name__)

    try:
        return await asyncio.wait_for(
            nats.connect(
                servers=list(address.servers),
                name=name,
                connect_timeout=2,
                reconnect_time_wait=0.5,
                max_reconnect_attempts=-1,  # a lost server is the cluster's business; keep trying the others
                allow_reconnect=True,
                error_cb=report,
            ),
            _SETUP_DEADLINE,
        )
    except (*_NATS_ERRORS, OSError) as exc:
        reason = str(exc) or f"no server answered in {_SETUP_DEADLINE:.0f} s"
        raise BusUnavailable(f"cannot reach NATS at {','.join(address.servers)}: {reason}") from exc


def stream_config(address: BusAddress, options: BusOptions) -> api.StreamConfig:
    """The stream's configuration from the address (replicas) and the `BUS_*` limits."""
    return api.StreamConfig(
        name=STREAM_NAME,
        subjects=stream_subjects(),
        storage=api.StorageType.FILE,
        num_replicas=options.replicas or stream_replicas(address.cluster_size),
        duplicate_window=options.duplicate_window.total_seconds(),
        max_age=options.max_age.total_seconds() if options.max_age else None,
        max_bytes=options.max_bytes,
        discard=api.DiscardPolicy.OLD,
    )


async def ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    """Create the stream, or bring an existing one's limits up to date; retried while the cluster forms."""
    deadline = time.monotonic() + _SETUP_DEADLINE
    while True:
        try:
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:
                await js.update_stream(config)  # it exists with other limits
            return
        except _NATS_ERRORS as exc:
            if time.monotonic() > deadline:
                raise BusUnavailable(f"cannot create the JetStream stream {STREAM_NAME}: {exc}") from exc
            log.info("JetStream not ready (%s); retrying", exc)
            await asyncio.sleep(_RETRY_PAUSE)


class _Round:
    """The acknowledgements of one round of publishing, by message index: None until the stream answers,
    then whether it already had the message (a duplicate), or an exception when it refused it."""

    def __init__(self, count: int) -> None:
        self.results: list[bool | Exception | None] = [None] * count
        self.outstanding = 0  # sent, not yet answered
        self.answered = 0
        self.progress = asyncio.Event()

    def answer(self, index: int, result: bool | Exception) -> None:
        if 0 <= index < len(self.results) and self.results[index] is None:
            self.results[index] = result
            self.outstanding -= 1
            self.answered += 1
            self.progress.set()

    async def next_answer(self, seconds: float) -> None:
        """Return once another answer came; `TimeoutError` if none came within `seconds`."""
        self.progress.clear()
        if not await wait_event(self.progress, seconds):
            raise TimeoutError("no acknowledgement within the publish timeout")


class JetStreamPublisher:
    """Publishes messages with their message id and waits for every acknowledgement.

    Each message asks for its acknowledgement on an inbox of the round's own, `<prefix>.<round>.<index>`,
    answered into a plain list: the client's `publish_async` makes a future, a semaphore wait and a token
    per message, which cost more than the publish itself on the ingester's one thread.
    """

    def __init__(self, client: Client, options: BusOptions) -> None:
        self._client = client
        self._js = client.jetstream(timeout=options.publish_timeout.total_seconds())
        self._timeout = options.publish_timeout.total_seconds()
        self._inbox = client.new_inbox()
        self._rounds: dict[str, _Round] = {}
        self._round = 0

    @classmethod
    async def connect(cls, address: BusAddress, options: BusOptions) -> JetStreamPublisher:
        client = await _connect(address, "teston-ingest")
        publisher = cls(client, options)
        await client.subscribe(f"{publisher._inbox}.*.*", cb=publisher._acknowledged)
        await ensure_stream(publisher._js, stream_config(address, options))
        return publisher

    async def _acknowledged(self, message: Msg) -> None:
        _, round_id, index = message.subject.rsplit(".", 2)
        state = self._rounds.get(round_id)
        if state is None:
            return  # a round already given up on
        result: bool | Exception
        if message.headers and message.headers.get(api.Header.STATUS) == _NO_RESPONDERS:
            result = nats.js.errors.NoStreamResponseError()
        else:
            try:
                answer = json.loads(message.data)
                error = answer.get("error")
                result = nats.js.errors.APIError.from_error(error) if error else bool(answer.get("duplicate"))
            except ValueError as exc:
                result = exc
        state.answer(int(index), result)

    async def _publish_round(self, messages: Sequence[OutgoingMessage]) -> list[bool | Exception | None]:
        """Send every message, at most `_IN_FLIGHT` unanswered at once; wait up to the publish timeout for
        the answers once sent (or while none comes)."""
        self._round += 1
        round_id = str(self._round)
        state = self._rounds[round_id] = _Round(len(messages))
        prefix = f"{self._inbox}.{round_id}."
        publish = self._client.publish
        try:
            try:
                for index, message in enumerate(messages):
                    while state.outstanding >= _IN_FLIGHT:
                        await state.next_answer(self._timeout)
                    state.outstanding += 1
                    headers = {MESSAGE_ID_HEADER: message.message_id, _EXPECTED_STREAM: STREAM_NAME}
                    if message.events > 1:
                        headers[EVENTS_HEADER] = str(message.events)
                    await publish(
                        subject_for(message.wiki), message.payload, reply=prefix + str(index), headers=headers
                    )
                while state.answered < len(messages):
                    await state.next_answer(self._timeout)
            except (*_NATS_ERRORS, OSError) as exc:
                log.warning("publishing to JetStream failed (%s)", exc or type(exc).__name__)
            return list(state.results)
        finally:
            del self._rounds[round_id]

    async def publish(self, messages: Sequence[OutgoingMessage], give_up: threading.Event) -> int:
        duplicates = 0
        pending = list(messages)
        attempt = 0
        while pending:
            results = await self._publish_round(pending)
            failed = [
                message
                for message, result in zip(pending, results, strict=True)
                if result is None or isinstance(result, Exception)
            ]
            duplicates += sum(
                message.events for message, result in zip(pending, results, strict=True) if result is True
            )
            if failed:
                attempt += 1
                if give_up.is_set():
                    raise BusUnavailable(f"JetStream did not acknowledge {len(failed)} events")
                refused = next((result for result in results if isinstance(result, Exception)), None)
                log.warning(
                    "%d events not acknowledged by JetStream (%s); sending them again",
                    len(failed),
                    f"{type(refused).__name__}: {refused}" if refused else "no answer",
                )
                await asyncio.sleep(min(_RETRY_PAUSE * attempt, 5.0))
            pending = failed
        return duplicates

    async def close(self) -> None:
        await self._client.close()


class JetStreamConsumer:
    """One of the sinks pulling from the shared durable consumer; unacknowledged messages come back."""

    def __init__(self, client: Client, puller: Puller) -> None:
        self._client = client
        self._puller = puller
        self._lag = BusLag(0, 0.0)

    @classmethod
    async def connect(cls, address: BusAddress, options: BusOptions) -> JetStreamConsumer:
        client = await _connect(address, "teston-sink")
        js = client.jetstream()
        await ensure_stream(js, stream_config(address, options))
        config = api.ConsumerConfig(
            durable_name=CONSUMER_NAME,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=options.ack_wait.total_seconds(),
            max_deliver=-1,  # a message is never dropped for being redelivered; poison goes to quarantine
            # The server's default (1,000 unacknowledged messages across all sinks) would cap two sinks at
            # half a batch each.
            max_ack_pending=_MAX_ACK_PENDING,
        )
        deadline = time.monotonic() + _SETUP_DEADLINE
        while True:
            try:
                # Binds to the consumer, creating it if it is missing; the messages come through a Puller.
                subscription = await js.pull_subscribe(
                    f"{SUBJECT_PREFIX}.>", durable=CONSUMER_NAME, stream=STREAM_NAME, config=config
                )
                await subscription.unsubscribe()
                puller = Puller(client, STREAM_NAME, CONSUMER_NAME)
                await puller.start()
                return cls(client, puller)
            except _NATS_ERRORS as exc:
                if time.monotonic() > deadline:
                    await client.close()
                    raise BusUnavailable(f"cannot create the consumer {CONSUMER_NAME}: {exc}") from exc
                await asyncio.sleep(_RETRY_PAUSE)

    async def fetch(self, max_messages: int, max_wait: float) -> list[ReceivedMessage]:
        try:
            messages = await self._puller.take(max_messages, max_wait)
        except (*_NATS_ERRORS, OSError) as exc:
            # A leader election or a reconnect: the messages stay in the stream for the next fetch.
            log.warning("fetching from JetStream failed (%s); retrying", exc)
            await asyncio.sleep(_RETRY_PAUSE)
            return []
        if not messages:
            self._lag = BusLag(0, 0.0)
            return []
        received = [self._received(message) for message in messages]
        if messages:
            oldest = received[0].published_at
            age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
            self._lag = BusLag(messages[-1].metadata.num_pending or 0, max(age, 0.0))
        return received

    @staticmethod
    def _received(message: Msg) -> ReceivedMessage:
        metadata = message.metadata
        published = metadata.timestamp
        if published is not None and published.tzinfo is None:
            published = published.replace(tzinfo=UTC)
        return ReceivedMessage(
            payload=message.data,
            source=message_source(BusEngine.NATS, STREAM_NAME, metadata.sequence.stream),
            published_at=published,
            handle=message,
            events=header_events(message.headers.get(EVENTS_HEADER) if message.headers else None),
        )

    async def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        # A lost acknowledgement only means a redelivery, which PostgreSQL's primary key absorbs.
        try:
            for message in messages:
                await message.handle.ack()
            await self._client.flush()
        except _NATS_ERRORS as exc:
            log.warning("acknowledging to JetStream failed (%s); the batch will be delivered again", exc)

    def lag(self) -> BusLag:
        return self._lag

    async def close(self) -> None:
        await self._client.close()
