"""The bus on a real 3-node JetStream cluster: `teston ingest` → stream → two `teston sink` processes.

The stream leader is killed (SIGKILL) while the ingester publishes, and one sink is killed mid-run; the
database must end exactly as the direct path leaves it (every distinct event once, every bad one
quarantined once), plus the poison message published straight onto the bus, quarantined by a sink.
"""

from __future__ import annotations

import asyncio
import collections
import signal
from pathlib import Path

import nats
import nats.errors

from ingestion.bus.naming import MESSAGE_ID_HEADER, STREAM_NAME, subject_for
from ingestion.events import Rejection, parse_event
from teston.core.wikis import WikiCatalog
from tests.bus_fixtures import (
    NatsCluster,
    bus_env,
    counts,
    quarantine,
    spawn_teston,
    stop_process,
    stored_rows,
    wait_until,
)
from tests.conftest import DATA_DIR
from tests.replays import ingest_path

CAPTURE = DATA_DIR / "2021-08-27_all-wikis_1950.jsonl"
MALFORMED = DATA_DIR / "malformed" / "events.jsonl"
POISON = b'{"meta": {"id": "not an event"'


def capture_with_bad_events(tmp_path: Path) -> Path:
    """The 1950-event capture with the malformed corpus mixed in (one bad line every 40 good ones)."""
    good = CAPTURE.read_bytes().splitlines()
    bad = MALFORMED.read_bytes().splitlines()
    lines: list[bytes] = []
    for index, line in enumerate(good):
        lines.append(line)
        if index % 40 == 0 and bad:
            lines.append(bad.pop(0))
    lines.extend(bad)
    path = tmp_path / "capture.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


async def _stream_state(cluster: NatsCluster) -> tuple[int, str | None]:
    client = await nats.connect(
        servers=[n.url for n in cluster.nodes if n.process and n.process.poll() is None]
    )
    try:
        info = await client.jetstream(timeout=2).stream_info(STREAM_NAME)
        return info.state.messages, info.cluster.leader if info.cluster else None
    finally:
        await client.close()


async def _publish_poison(cluster: NatsCluster) -> int:
    client = await nats.connect(servers=[n.url for n in cluster.nodes])
    try:
        for _ in range(100):
            try:
                ack = await client.jetstream(timeout=5).publish(
                    subject_for("enwiki"), POISON, headers={MESSAGE_ID_HEADER: "poison-1"}
                )
                return ack.seq
            except nats.errors.Error:  # the new stream's leader not elected yet
                await asyncio.sleep(0.2)
        raise AssertionError("the poison message was never acknowledged")
    finally:
        await client.close()


async def test_cluster_kills_lose_and_duplicate_nothing(
    nats_cluster: NatsCluster, db_url: str, reference_url: str, tmp_path: Path
) -> None:
    capture = capture_with_bad_events(tmp_path)
    reason = parse_event(POISON, WikiCatalog.load())
    assert isinstance(reason, Rejection)

    env = bus_env(
        db_url, nats_cluster.bus_url, SINK_BATCH_SIZE="100", BUS_ACK_WAIT="2s", BUS_PUBLISH_TIMEOUT="2s"
    )
    processes: list[asyncio.subprocess.Process] = []
    try:
        sinks = [await spawn_teston(env, "sink", log=tmp_path / f"sink{i}.log") for i in (1, 2)]
        processes += sinks
        ingester = await spawn_teston(
            env, "ingest", "--source", str(capture), "--batch-size", "10", "--no-progress",
            log=tmp_path / "ingest.log",
        )  # fmt: skip
        processes.append(ingester)
        await wait_until(lambda: _has_stream(nats_cluster), 60, "the stream created")

        # Kill the stream's leader once the ingester is well into the capture (watched from the moment
        # the stream exists: anything done first could let the ingester reach the capture's end).
        for _ in range(1200):  # a minute at most
            try:
                messages, leader = await _stream_state(nats_cluster)
            except nats.errors.Error:
                messages, leader = 0, None
            if messages >= 300 and leader is not None:
                break
            await asyncio.sleep(0.05)
        assert leader is not None, "the ingester never published 300 events"
        nats_cluster.kill(leader)
        killed_leader_during_ingest = ingester.returncode is None

        # Meanwhile, the direct path's result: what the bus path must end with; and a message no sink
        # can parse, published once the stream has a new leader.
        await asyncio.to_thread(ingest_path, reference_url, capture)
        expected_rows = stored_rows(reference_url)
        poison_seq = await _publish_poison(nats_cluster)
        expected_quarantine = sorted(
            [*quarantine(reference_url), (f"nats:{STREAM_NAME}#{poison_seq}", reason.reason, reason.payload)]
        )

        # Kill one sink once some rows are stored, while the rest is still coming.
        await wait_until(lambda: counts(db_url)[0] >= 600, 60, "600 rows stored")
        sinks[0].kill()
        await sinks[0].wait()

        out, _ = await asyncio.wait_for(ingester.communicate(), 90)
        assert ingester.returncode == 0, (tmp_path / "ingest.log").read_text()[-3000:]
        assert out.decode().startswith("ingested ")

        want = (len(expected_rows), len(expected_quarantine))
        await wait_until(lambda: counts(db_url) == want, 90, f"{want} rows and quarantined events")
        sinks[1].send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(sinks[1].communicate(), 30)
        assert sinks[1].returncode == 0
        assert out.decode().startswith("received ")
    finally:
        for process in processes:
            await stop_process(process)

    assert killed_leader_during_ingest
    assert stored_rows(db_url) == expected_rows
    assert quarantine(db_url) == expected_quarantine
    stored_ids = [row[1] for row in expected_rows]
    assert len(stored_ids) == len(set(stored_ids)) > 1900
    assert collections.Counter(q[0].split("#")[0] for q in expected_quarantine)[f"nats:{STREAM_NAME}"] == 1


def _has_stream(cluster: NatsCluster) -> bool:
    async def check() -> bool:
        try:
            await _stream_state(cluster)
            return True
        except Exception:
            return False

    return asyncio.run(check())
