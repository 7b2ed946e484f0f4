"""The live-stream client against a local EventStreams replaying the recorded capture, into PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import psycopg
import pytest
from prometheus_client import CollectorRegistry

from ingestion.backoff import ReconnectPolicy
from ingestion.client import EventStreamClient, user_agent
from ingestion.metrics import IngestMetrics
from ingestion.pipeline import IngestPipeline, IngestSummary, PipelineOptions
from ingestion.resilient_writer import ResilientWriter
from ingestion.service import IngestionService
from teston.cli.wiring import metrics_endpoint, writer_connector
from teston.core.wikis import WikiCatalog
from tests.conftest import DATA_DIR
from tests.fakestream import USER_AGENT, FakeEventStreams, RecordedEvent, read_capture

CAPTURE = DATA_DIR / "2021-08-27_all-wikis_1950.sse"
PRODUCT = "TestON/0.1.0 (https://example.org/teston-tests)"
FAST = ReconnectPolicy(initial=0.01, maximum=0.2)


@pytest.fixture(scope="module")
def recorded() -> list[RecordedEvent]:
    return read_capture(CAPTURE)


@pytest.fixture(scope="module")
def catalog() -> WikiCatalog:
    return WikiCatalog.load()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def stored_ids(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [str(r[0]) for r in conn.execute("SELECT event_id FROM recent_changes")]


def cursor_of(url: str, stream: str) -> tuple[str, datetime | None] | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT last_event_id, last_event_time FROM stream_cursors WHERE stream = %s", (stream,)
        ).fetchone()
    return (row[0], row[1]) if row else None


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def make_pipeline(
    session: aiohttp.ClientSession,
    url: str,
    db_url: str,
    catalog: WikiCatalog,
    *,
    since: datetime | None = None,
    metrics: IngestMetrics | None = None,
    writer: ResilientWriter | None = None,
) -> tuple[EventStreamClient, IngestPipeline]:
    client = EventStreamClient(
        session,
        url,
        user_agent=user_agent(PRODUCT),
        since=since,
        policy=FAST,
        rng=random.Random(7),
        read_timeout=5,
        on_reconnect=metrics.count_reconnect if metrics else None,
    )
    pipeline = IngestPipeline(
        client,
        writer or ResilientWriter(writer_connector(db_url), policy=FAST),
        catalog,
        options=PipelineOptions(batch_size=500, flush_interval=0.05, since=since),
        metrics=metrics,
    )
    return client, pipeline


async def run_until(pipeline: IngestPipeline, condition: Callable[[], bool]) -> IngestSummary:
    task = asyncio.create_task(pipeline.run())
    try:
        await wait_until(condition)
    finally:
        pipeline.stop()
        summary = await asyncio.wait_for(task, 10)
    return summary


async def test_every_event_arrives_exactly_once_despite_dropped_connections(
    db_url: str, session: aiohttp.ClientSession, recorded: list[RecordedEvent], catalog: WikiCatalog
) -> None:
    async with FakeEventStreams(recorded, drop_every=150, retry_ms=20) as server:
        _, pipeline = make_pipeline(session, server.url, db_url, catalog)
        last_id = recorded[-1].id
        summary = await run_until(
            pipeline,
            lambda: (
                (cursor_of(db_url, server.url) or ("",))[0] == last_id
                and len(stored_ids(db_url)) == len(recorded)
            ),
        )

    ids = stored_ids(db_url)
    assert sorted(ids) == sorted(e.meta_id for e in recorded)
    assert len(ids) == len(set(ids)) == 1950
    assert summary.ingested == 1950
    # Resumes re-send events (recorded ids are shared timestamps): the primary key dropped them.
    assert summary.duplicates > 0
    assert summary.canary == summary.quarantined == 0
    connections = [r for r in server.requests if r.status == 200]
    assert len(connections) >= 1950 // 150
    assert server.max_concurrent == 1
    assert all(USER_AGENT.match(r.headers["User-Agent"]) for r in server.requests)
    assert "Last-Event-ID" not in connections[0].headers
    sent_ids = {e.id for e in recorded}
    assert all(r.headers["Last-Event-ID"] in sent_ids for r in connections[1:])
    cursor = cursor_of(db_url, server.url)
    assert cursor is not None
    assert cursor[1] == max(
        datetime.fromtimestamp(json.loads(e.block.split(b"data: ", 1)[1])["timestamp"], UTC) for e in recorded
    )


async def test_the_fake_stream_refuses_anonymous_and_concurrent_clients(
    session: aiohttp.ClientSession, recorded: list[RecordedEvent]
) -> None:
    async with FakeEventStreams(recorded[:3]) as server:
        async with session.get(server.url, headers={"User-Agent": "python-requests/2.31"}) as response:
            assert response.status == 403
        headers = {"User-Agent": user_agent(PRODUCT)}
        async with session.get(server.url, headers=headers) as first:
            assert first.status == 200
            await first.content.readuntil(b"\n\n")
            async with aiohttp.ClientSession() as other, other.get(server.url, headers=headers) as second:
                assert second.status == 429
    assert [r.status for r in server.requests] == [403, 200, 429]


async def test_reconnects_through_server_errors_and_throttling(
    db_url: str, session: aiohttp.ClientSession, recorded: list[RecordedEvent], catalog: WikiCatalog
) -> None:
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    events = recorded[:200]
    async with FakeEventStreams(events, inject_statuses=[503, 429, 500], drop_every=80) as server:
        _, pipeline = make_pipeline(session, server.url, db_url, catalog, metrics=metrics)
        await run_until(pipeline, lambda: len(stored_ids(db_url)) == len({e.meta_id for e in events}))
    assert [r.status for r in server.requests[:4]] == [503, 429, 500, 200]
    assert registry.get_sample_value("teston_ingest_reconnects_total", {"reason": "server_error"}) == 2
    assert registry.get_sample_value("teston_ingest_reconnects_total", {"reason": "throttled"}) == 1
    assert registry.get_sample_value("teston_ingest_reconnects_total", {"reason": "disconnected"}) >= 2
    assert registry.get_sample_value("teston_ingest_inserted_events_total") == 200
    assert registry.get_sample_value("teston_ingest_events_total", {"wiki": "kowiki", "type": "edit"}) >= 1


async def test_a_restart_resumes_from_the_stored_cursor(
    db_url: str, session: aiohttp.ClientSession, recorded: list[RecordedEvent], catalog: WikiCatalog
) -> None:
    async with FakeEventStreams(recorded[:300]) as server:
        writer = ResilientWriter(writer_connector(db_url), policy=FAST)
        _, first = make_pipeline(session, server.url, db_url, catalog, writer=writer)
        await run_until(first, lambda: len(stored_ids(db_url)) == 300)
        # The first ingester ends, and with it its connection and the stream's lock.
        await asyncio.to_thread(writer.close)
        stored = cursor_of(db_url, server.url)
        server.events = recorded[:600]  # the stream moved on while we were away
        _, second = make_pipeline(session, server.url, db_url, catalog)
        await run_until(second, lambda: len(stored_ids(db_url)) == 600)
    assert stored is not None
    assert stored[0] == recorded[299].id
    assert server.requests[-1].headers["Last-Event-ID"] == recorded[299].id
    assert sorted(stored_ids(db_url)) == sorted(e.meta_id for e in recorded[:600])


async def test_since_is_sent_when_there_is_no_cursor(
    db_url: str, session: aiohttp.ClientSession, recorded: list[RecordedEvent], catalog: WikiCatalog
) -> None:
    since = datetime(2021, 8, 27, 13, 20, tzinfo=UTC)
    async with FakeEventStreams(recorded[:10]) as server:
        _, pipeline = make_pipeline(session, server.url, db_url, catalog, since=since)
        await run_until(pipeline, lambda: len(stored_ids(db_url)) == 10)
    assert server.requests[0].query == {"since": "2021-08-27T13:20:00Z"}
    assert "Last-Event-ID" not in server.requests[0].headers


async def test_an_outage_longer_than_the_retention_is_recorded_as_a_gap(
    db_url: str, session: aiohttp.ClientSession, recorded: list[RecordedEvent], catalog: WikiCatalog
) -> None:
    stopped_at = datetime(2021, 8, 10, 9, 0, tzinfo=UTC)
    async with FakeEventStreams(recorded[:50]) as server:
        with psycopg.connect(db_url) as conn:
            # A cursor from weeks before the capture: the stream no longer has that id.
            conn.execute(
                "INSERT INTO stream_cursors (stream, last_event_id, last_event_time) VALUES (%s, %s, %s)",
                (server.url, '[{"topic":"x","partition":0,"timestamp":1628586000000}]', stopped_at),
            )
        _, pipeline = make_pipeline(session, server.url, db_url, catalog)
        summary = await run_until(pipeline, lambda: len(stored_ids(db_url)) == 50)
    with psycopg.connect(db_url) as conn:
        gaps = conn.execute("SELECT stream, gap_from, gap_to FROM ingest_gaps").fetchall()
    first_time = datetime(2021, 8, 27, 13, 20, 17, tzinfo=UTC)  # the capture's first event
    assert gaps == [(server.url, stopped_at, first_time)]
    assert len(summary.gaps) == 1


async def test_metrics_and_health_are_served(
    db_url: str, session: aiohttp.ClientSession, recorded: list[RecordedEvent], catalog: WikiCatalog
) -> None:
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    async with FakeEventStreams(recorded[:100]) as server:
        client, _ = make_pipeline(session, server.url, db_url, catalog)
        service = IngestionService(
            client,
            ResilientWriter(writer_connector(db_url)),
            catalog,
            options=PipelineOptions(flush_interval=0.05),
            metrics=metrics,
            serve_metrics=metrics_endpoint(registry, "127.0.0.1", _free_port()),
        )
        await service.start()
        try:
            await wait_until(lambda: len(stored_ids(db_url)) == 100)
            # The rows are visible at COMMIT, a moment before the pipeline accounts for the batch (its
            # metrics among the rest) back on the event loop.
            await wait_until(lambda: service.summary.ingested == 100)
            base = f"http://127.0.0.1:{service._metrics_server._port}"  # type: ignore[union-attr]
            async with session.get(f"{base}/metrics") as response:
                text = await response.text()
            async with session.get(f"{base}/healthz") as response:
                health: dict[str, Any] = await response.json()
                status = response.status
        finally:
            await service.stop()
    assert 'teston_ingest_events_total{type="edit",wiki="kowiki"}' in text
    assert "teston_ingest_batch_commit_seconds_bucket" in text
    assert "teston_ingest_event_lag_seconds_count 100.0" in text
    assert "teston_ingest_last_event_timestamp_seconds 1.63007" in text
    assert status == 200
    assert health["status"] == "ok"
    assert health["ingested"] == 100


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
