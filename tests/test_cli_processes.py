"""Several `teston` processes on one TESTON_HOME: started together, stopped under each other."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from teston.core.embedded import EmbeddedPostgres
from tests.fakestream import FakeEventStreams, read_capture

DATA = Path(__file__).parent / "data"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DB_ADDR", "DATABASE_URL", "LOG_LEVEL"}}
    return {**env, "TESTON_HOME": str(home), "PYTHONPATH": str(Path(__file__).parent.parent), **extra}


def _teston(*args: str) -> list[str]:
    return [sys.executable, "-m", "teston", *args]


def test_processes_started_together_on_a_fresh_home_all_succeed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    files = [DATA / "2023-07-29_enwiki_100.jsonl", DATA / "2025-05-03_sample_144.jsonl"]
    commands = [_teston("ingest", "--source", str(f), "--no-progress") for f in files]
    commands.append(_teston("db", "upgrade"))
    processes = [
        subprocess.Popen(c, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    results = [(p, *p.communicate(timeout=240)) for p in processes]
    for process, _out, err in results:
        assert process.returncode == 0, err
        assert "Traceback" not in err
    ingested = [int(re.search(r"ingested (\d+)", out).group(1)) for _, out, _ in results[:2]]  # type: ignore[union-attr]
    assert ingested == [100, 144]
    with EmbeddedPostgres(home / "postgres") as server, psycopg.connect(server.url) as conn:
        stored = conn.execute("SELECT count(*) FROM recent_changes").fetchone()
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert stored == (244,)
    assert len(revision) == 1


def _stored(server: EmbeddedPostgres) -> int:
    if server.port is None:
        return 0
    try:
        with psycopg.connect(server.url, connect_timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM recent_changes").fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0


async def test_db_stop_refuses_while_an_import_runs_and_the_import_stops_promptly_when_forced(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    recorded = read_capture(DATA / "2021-08-27_all-wikis_1950.sse")
    async with FakeEventStreams(recorded, pace=0.02) as stream:
        env = _env(
            home, METRICS_PORT="0", INGEST_FLUSH_INTERVAL="100ms", TESTON_CONTACT="https://example.org/t"
        )
        ingest = await asyncio.create_subprocess_exec(
            *_teston("ingest", "--source", stream.url),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            server = EmbeddedPostgres(home / "postgres")
            deadline = time.monotonic() + 120
            while await asyncio.to_thread(_stored, server) == 0:
                assert time.monotonic() < deadline, "the import stored nothing"
                await asyncio.sleep(0.2)

            refused = await asyncio.to_thread(
                subprocess.run, _teston("db", "stop"), env=env, capture_output=True, text=True, timeout=120
            )
            assert refused.returncode == 1
            assert f"in use by pid {ingest.pid} (teston ingest --source {stream.url})" in refused.stderr
            assert "--force" in refused.stderr
            assert server.is_running()

            forced = await asyncio.to_thread(
                subprocess.run,
                _teston("db", "stop", "--force"),
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert forced.returncode == 0, forced.stderr
            _, err = await asyncio.wait_for(ingest.communicate(), timeout=60)
        finally:
            if ingest.returncode is None:
                ingest.kill()
                await ingest.wait()
    errors = err.decode()
    assert ingest.returncode == 1
    assert "Traceback" not in errors
    last = errors.strip().splitlines()[-1]
    assert last.startswith(f"teston: the embedded PostgreSQL in {home / 'postgres'} was stopped while in use")
    with EmbeddedPostgres(home / "postgres") as again, psycopg.connect(again.url) as conn:
        row = conn.execute("SELECT count(*) FROM recent_changes").fetchone()
        cursor = conn.execute("SELECT last_event_id FROM stream_cursors").fetchone()
    assert row is not None
    assert row[0] > 0
    assert cursor is not None  # what was stored is covered by the cursor, so a resume continues from there
