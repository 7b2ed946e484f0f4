"""The bus through the Kafka protocol (aiokafka against Tansu, an in-memory Kafka-protocol broker).

This tests TestON's use of the protocol — topic keyed by wiki, one consumer group, offsets committed only
after the PostgreSQL commit — not durability: the broker keeps nothing on disk.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingestion.bus.naming import CONSUMER_NAME, TOPIC
from ingestion.events import INGEST_COLUMNS
from ingestion.replay import ingest_path
from teston.cli.service import sink_service
from teston.runtime import run_components
from teston.settings import load_settings
from tests.bus_fixtures import (
    KafkaBroker,
    bus_env,
    counts,
    quarantine,
    spawn_teston,
    stop_process,
    stored_rows,
)
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


async def _run_sink(db_url: str, bus_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """One `teston sink` run, in this process, until the bus has had nothing for a while."""
    monkeypatch.setenv("DB_ADDR", db_url)
    monkeypatch.setenv("BUS_URL", bus_url)
    monkeypatch.setenv("SINK_BATCH_SIZE", "200")
    sink = sink_service(load_settings(None), db_url, metrics_port=0, idle_exit=2.0)
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
    env = bus_env(db_url, kafka_broker.bus_url)
    ingester = await spawn_teston(
        env, "ingest", "--source", str(capture), "--no-progress", log=tmp_path / "ingest.log"
    )
    try:
        await asyncio.to_thread(ingest_path, reference_url, capture)
        expected_rows, expected_quarantine = stored_rows(reference_url), quarantine(reference_url)
        out, _ = await asyncio.wait_for(ingester.communicate(), 90)
    finally:
        await stop_process(ingester)
    assert ingester.returncode == 0, (tmp_path / "ingest.log").read_text()[-3000:]
    assert out.decode().startswith(f"ingested {len(expected_rows)}, ")
    # Bad events never reach the bus: the ingester quarantined them already.
    assert quarantine(db_url) == expected_quarantine
    assert counts(db_url)[0] == 0

    first = await _run_sink(db_url, kafka_broker.bus_url, monkeypatch)
    committed, ends, keys = await _offsets(kafka_broker)
    restarted = await _run_sink(db_url, kafka_broker.bus_url, monkeypatch)

    assert stored_rows(db_url) == expected_rows
    assert quarantine(db_url) == expected_quarantine
    # The first sink read every message once and committed each partition's offset past its last record.
    assert first.startswith(f"received {len(expected_rows)}, inserted {len(expected_rows)}, duplicates 0,")
    assert committed == ends
    # Keyed by wiki: each wiki's events all on one partition.
    wiki_at = INGEST_COLUMNS.index("wiki")
    assert set(keys) == {str(row[wiki_at]).encode() for row in expected_rows}
    assert all(len(partitions) == 1 for partitions in keys.values())
    # The restarted sink re-read nothing already committed.
    assert restarted.startswith("received 0, inserted 0,")
