"""`teston up` runs ingestion as a component: metrics and health served, SIGTERM flushes and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time

import aiohttp
import psycopg
import pytest

from teston.core.runtime import INGEST_SWITCH_INTERVAL, prompt_thread_switches, run_components
from tests.conftest import DATA_DIR
from tests.fakestream import FakeEventStreams, read_capture

CAPTURE = DATA_DIR / "2021-08-27_all-wikis_1950.sse"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM recent_changes").fetchone()
    return int(row[0]) if row else 0


async def test_up_ingests_the_stream_serves_metrics_and_stops_cleanly_on_sigterm(db_url: str) -> None:
    recorded = read_capture(CAPTURE)[:300]
    port = _free_port()
    async with FakeEventStreams(recorded) as server:
        env = {
            **os.environ,
            "DB_ADDR": db_url,
            "STREAM_URL": server.url,
            "METRICS_PORT": str(port),
            "TESTON_CONTACT": "https://example.org/teston-tests",
            "INGEST_FLUSH_INTERVAL": "100ms",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "teston", "up", env=env, stderr=asyncio.subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 20
            while await asyncio.to_thread(_count, db_url) < len(recorded):
                assert time.monotonic() < deadline, "teston up did not ingest the stream"
                await asyncio.sleep(0.1)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    assert response.status == 200
                    assert (await response.json())["status"] == "ok"
                # The rows are visible at COMMIT, a moment before the pipeline counts them.
                while True:
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                        metrics = await response.text()
                    if "teston_ingest_inserted_events_total 300.0" in metrics or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
            assert "teston_ingest_inserted_events_total 300.0" in metrics
            # The same endpoint serves the scheduler's metrics: one registry for the whole process.
            assert 'teston_job_runs_total{kind="nightly",status="failed"} 0.0' in metrics
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), 15)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert b"ingestion stopped" in stderr


class _Component:
    def __init__(self, name: str, log: list[str], *, ends: bool = False, fails: bool = False) -> None:
        self.name = name
        self._log = log
        self._ends = ends
        self._fails = fails

    async def start(self) -> None:
        self._log.append(f"start {self.name}")

    async def wait(self) -> None:
        if self._fails:
            raise RuntimeError(f"{self.name} broke")
        if not self._ends:
            await asyncio.Event().wait()

    async def stop(self) -> None:
        self._log.append(f"stop {self.name}")


async def test_components_start_in_order_and_stop_in_reverse_when_asked() -> None:
    log: list[str] = []
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    await run_components([_Component("db", log), _Component("ingestion", log)], stop)
    assert log == ["start db", "start ingestion", "stop ingestion", "stop db"]


async def test_one_failing_component_stops_the_others_and_is_reported() -> None:
    log: list[str] = []
    components = [_Component("ingestion", log), _Component("bot", log, fails=True)]
    with pytest.raises(RuntimeError, match="bot broke"):
        await run_components(components, asyncio.Event())
    assert log == ["start ingestion", "start bot", "stop bot", "stop ingestion"]


def test_ingest_only_processes_switch_threads_sooner_and_restore_the_interval_after() -> None:
    default = sys.getswitchinterval()
    assert default > INGEST_SWITCH_INTERVAL
    with prompt_thread_switches():
        assert sys.getswitchinterval() == pytest.approx(INGEST_SWITCH_INTERVAL)
    assert sys.getswitchinterval() == default
