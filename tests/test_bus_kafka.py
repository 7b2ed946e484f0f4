"""The bus through the Kafka protocol (aiokafka against Tansu, an in-memory Kafka-protocol broker).

This tests TestON's use of the protocol — topic keyed by wiki, one consumer group, offsets committed only
after the PostgreSQL commit — not durability: the broker keeps nothing on disk.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from ingestion.bus.naming import CONSUMER_NAME, TOPIC
from ingestion.events import INGEST_COLUMNS
from ingestion.metrics import IngestMetrics
from ingestion.replay import REPLAY_BATCH_SIZE
from teston.cli.wiring import catalog, event_source, ingestion_service, sink_service
from teston.core.runtime import run_components
from teston.core.settings import Settings, load_settings
from tests.bus_fixtures import (
    KafkaBroker,
    counts,
    quarantine,
    stored_rows,
)
from tests.replays import ingest_path
from tests.test_bus_jetstream import capture_with_bad_events


async def _offsets(broker: KafkaBroker) -> tuple[dict[int, int], dict[int, int], dict[bytes, set[int]]]:
    """The group's committed offset, the last record's offset + 1, and each key's partitions."""
    servers = f"127.0.0.1:{broker.port}"
    # Assigned partitions, not a subscription: reading the group's offsets without joining it.
    reader = AIOKafkaConsumer(bootstrap_servers=servers, group_id=CONSUMER_NAME, enable_auto_commit=False)
    await reader.start()
    try:
        partitions = [TopicPartition(TOPIC, p) for p in sorted(reader.partitions_for_topic(TOPIC) or ())]
        reader.assign(partitions)
        committed = {tp.partition: await reader.committed(tp) or 0 for tp in partitions}
        await reader.seek_to_beginning(*partitions)
        ends: dict[int, int] = {}
        keys: dict[bytes, set[int]] = {}
        while batch := await reader.getmany(timeout_ms=1500):
            for partition, records in batch.items():
                ends[partition.partition] = records[-1].offset + 1
                for record in records:
                    keys.setdefault(record.key or b"", set()).add(partition.partition)
    finally:
        await reader.stop()
    return committed, ends, keys


async def _run_sink(settings: Settings, db_url: str) -> str:
    """One `teston sink` run, in this process, until the bus has had nothing for a second."""
    sink = sink_service(settings, db_url, catalog=catalog(), metrics_port=0, idle_exit=1.0)
    await run_components([sink], asyncio.Event())
    return sink.summary.describe()


async def test_kafka_exactly_once_and_offsets_after_the_commit(
    kafka_broker: KafkaBroker,
    db_url: str,
    reference_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    capture = capture_with_bad_events(tmp_path)
    monkeypatch.setenv("DB_ADDR", db_url)
    monkeypatch.setenv("BUS_URL", kafka_broker.bus_url)
    monkeypatch.setenv("SINK_BATCH_SIZE", "200")
    settings = load_settings(None)
    # The ingester, in this process (`teston ingest --source` builds the same component), beside the
    # direct path's run into the reference database.
    async with aiohttp.ClientSession() as session:
        metrics = IngestMetrics(CollectorRegistry())
        ingester = ingestion_service(
            settings,
            db_url,
            event_source(settings, session, source_spec=str(capture), since=None, metrics=metrics),
            catalog=catalog(),
            metrics=metrics,
            since=None,
            batch_size=REPLAY_BATCH_SIZE,
            metrics_port=0,
        )
        reference = asyncio.create_task(asyncio.to_thread(ingest_path, reference_url, capture))
        await run_components([ingester], asyncio.Event())
        await reference
    expected_rows, expected_quarantine = stored_rows(reference_url), quarantine(reference_url)
    assert ingester.summary.ingested == len(expected_rows)
    # Bad events never reach the bus: the ingester quarantined them already.
    assert quarantine(db_url) == expected_quarantine
    assert counts(db_url)[0] == 0

    first = await _run_sink(settings, db_url)
    committed, ends, keys = await _offsets(kafka_broker)
    restarted = await _run_sink(settings, db_url)

    assert stored_rows(db_url) == expected_rows
    assert quarantine(db_url) == expected_quarantine
    # The first sink read every message once and committed each partition's offset past its last record.
    # A wiki's events of one batch travel as one record, so there are fewer records than events.
    received = re.fullmatch(r"received (\d+) in (\d+) messages, inserted (\d+), duplicates 0,.*", first)
    assert received is not None, first
    events, records, inserted = map(int, received.groups())
    assert events == inserted == len(expected_rows)
    assert 0 < records < events
    assert committed == ends
    # Keyed by wiki: each wiki's events all on one partition.
    wiki_at = INGEST_COLUMNS.index("wiki")
    assert set(keys) == {str(row[wiki_at]).encode() for row in expected_rows}
    assert all(len(partitions) == 1 for partitions in keys.values())
    # The restarted sink re-read nothing already committed.
    assert restarted.startswith("received 0 in 0 messages, inserted 0,")
