"""EventStreams with the bus: an ingester killed (SIGKILL) mid-stream resumes after the last event the bus
acknowledged; every event is stored once (republished ones dropped by their message id or the primary key).

The restart is `teston up` with `TESTON_ROLES=ingest,sink`: one process, two roles, and the sink's
`/metrics` with the bus lag."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import psycopg
from nats.js.api import AckPolicy, ConsumerConfig

from ingestion.bus.grouping import EVENTS_HEADER, group_id
from ingestion.bus.naming import MESSAGE_ID_HEADER, STREAM_NAME, SUBJECT_PREFIX
from tests.bus_fixtures import (
    NatsCluster,
    bus_env,
    counts,
    free_port,
    spawn_teston,
    stop_process,
    stored_rows,
    wait_until,
)
from tests.conftest import DATA_DIR
from tests.fakestream import FakeEventStreams, read_capture

CAPTURE = DATA_DIR / "2021-08-27_all-wikis_1950.sse"


def _cursor(db_url: str) -> str | None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT last_event_id FROM stream_cursors").fetchone()
    return row[0] if row else None


async def _fetch(subscription: Any, *, within: float = 30.0) -> list[Any]:
    """The next messages of a pull consumer. Just after a node of the cluster came back, the consumer
    (replicated like its stream) may have no leader for a moment, and JetStream answers 503: ask again."""
    deadline = time.monotonic() + within
    while True:
        try:
            return list(await subscription.fetch(batch=500, timeout=5))
        except nats.js.errors.ServiceUnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _bus_event_ids(cluster: NatsCluster) -> list[str]:
    """Every event id on the stream, in stream order (read by an ephemeral consumer): a lone event's
    message carries it as message id, a group's its events' digest."""
    client = await nats.connect(servers=[n.url for n in cluster.nodes])
    try:
        js = client.jetstream(timeout=5)
        total = (await js.stream_info(STREAM_NAME)).state.messages
        subscription = await js.pull_subscribe(
            f"{SUBJECT_PREFIX}.>", stream=STREAM_NAME, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        ids: list[str] = []
        read = 0
        while read < total:
            for message in await _fetch(subscription):
                read += 1
                headers = message.headers or {}
                events = [json.loads(text)["meta"]["id"] for text in message.data.splitlines()]
                if EVENTS_HEADER in headers:
                    assert int(headers[EVENTS_HEADER]) == len(events) > 1
                    assert headers[MESSAGE_ID_HEADER] == group_id(events)
                else:
                    assert [headers[MESSAGE_ID_HEADER]] == events
                ids.extend(events)
        await subscription.unsubscribe()
        return ids
    finally:
        await client.close()


async def test_killed_ingester_resumes_after_the_last_acknowledged_event(
    nats_cluster: NatsCluster, db_url: str, tmp_path: Path
) -> None:
    recorded = read_capture(CAPTURE)
    ids = [event.id for event in recorded]
    env = bus_env(db_url, nats_cluster.bus_url, INGEST_BATCH_SIZE="50", INGEST_FLUSH_INTERVAL="100ms")
    async with FakeEventStreams(recorded, pace=0.002) as server:
        ingester = await spawn_teston(env, "ingest", "--source", server.url, log=tmp_path / "ingest1.log")
        try:
            await wait_until(
                lambda: (c := _cursor(db_url)) is not None and ids.index(c) >= 300,
                60,
                "300 events acknowledged",
            )
        finally:
            await stop_process(ingester)
        cursor = _cursor(db_url)
        assert cursor is not None
        on_bus = await _bus_event_ids(nats_cluster)
        # The cursor never runs ahead of the bus: every event up to it was acknowledged.
        acknowledged = ids.index(cursor) + 1
        assert {e.meta_id for e in recorded[:acknowledged]} <= set(on_bus)
        assert len(on_bus) == len(set(on_bus)) < len(recorded)
        published_past_cursor = len(on_bus) - acknowledged

        # The restart is `teston up` running two roles: the ingester and a sink, with the sink's /metrics.
        port = free_port()
        up_env = {
            **env,
            "TESTON_ROLES": "ingest,sink",
            "STREAM_URL": server.url,
            "SINK_METRICS_PORT": str(port),
        }
        service = await spawn_teston(up_env, "up", log=tmp_path / "up.log")
        try:
            await wait_until(lambda: _cursor(db_url) == ids[-1], 60, "the restarted ingester caught up")
            await wait_until(lambda: counts(db_url)[0] == len(recorded), 60, "every event stored")
            metrics = await asyncio.to_thread(_scrape, port)
            service.send_signal(signal.SIGTERM)
            await asyncio.wait_for(service.wait(), 30)
            assert service.returncode == 0, (tmp_path / "up.log").read_text()[-3000:]
        finally:
            await stop_process(service)
        resumed = [r for r in server.requests if r.status == 200]
        assert resumed[-1].headers.get("Last-Event-ID") == cursor

    # Events published again after the restart (between the cursor and the kill) are on the bus twice
    # at most (once when their group is sent again alike: dropped by its id), and stored once.
    on_bus = await _bus_event_ids(nats_cluster)
    assert set(on_bus) == {e.meta_id for e in recorded}
    assert len(on_bus) <= len(recorded) + published_past_cursor
    assert sorted(str(row[1]) for row in stored_rows(db_url)) == sorted(e.meta_id for e in recorded)
    # The bus lag, as the sink last saw it, and what it stored.
    assert "teston_bus_pending_messages " in metrics
    assert "teston_bus_oldest_pending_age_seconds " in metrics
    inserted = re.search(r"^teston_sink_inserted_events_total (\S+)$", metrics, re.M)
    assert inserted is not None
    assert float(inserted.group(1)) == len(recorded)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()
