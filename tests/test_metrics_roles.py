"""The metrics of the scheduler and the bot, read back from their registries and over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from analytics.metrics import JobMetrics
from analytics.scheduler import INTRADAY, NIGHTLY, AnalyticsScheduler, Schedule
from bot.commands import CommandCore, Invoker
from bot.metrics import BotMetrics
from teston.cli.wiring import discord_bot_service
from teston.core.monitoring import MetricsServer
from teston.core.settings import load_settings
from teston.core.statuses import JobStatus
from tests.bot_fixtures import CATALOG, NOW, pool
from tests.fakediscord import FakeDiscord, pointed_at, pytest_plugin
from tests.replays import ingest_path

fake_discord = pytest_plugin.fake_discord
__all__ = ["fake_discord", "pool"]  # fixtures used by name

CAPTURE = Path(__file__).parent / "data" / "2021-08-27_all-wikis_1950.jsonl"
CAPTURE_DAY = date(2021, 8, 27)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        await asyncio.sleep(0.05)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# --- the scheduler ---------------------------------------------------------------------------------


def test_job_runs_failures_durations_last_success_and_the_finalisation_lag(
    db_url: str, tmp_path: Path
) -> None:
    ingest_path(db_url, CAPTURE, catalog=CATALOG)
    registry = CollectorRegistry()
    clock = Clock(datetime(2021, 8, 28, 1, 0, tzinfo=UTC))
    metrics = JobMetrics(registry, (INTRADAY, NIGHTLY), clock=clock)
    # Before any run every series exists, at zero, and there is no final day to be behind.
    assert value(registry, "teston_job_runs_total", kind=NIGHTLY, status="failed") == 0
    assert value(registry, "teston_job_last_success_timestamp_seconds", kind=NIGHTLY) == 0
    lag = value(registry, "teston_rollup_final_day_lag_days")
    assert lag is not None
    assert lag != lag
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("the export directory cannot be made here")
    with ConnectionPool(db_url, min_size=0, max_size=4) as pool:
        broken = AnalyticsScheduler(
            pool.connection, Schedule(export_dir=not_a_directory / "exports"), clock=clock, metrics=metrics
        )
        assert broken.run_nightly().status == JobStatus.FAILED
        assert value(registry, "teston_job_runs_total", kind=NIGHTLY, status="failed") == 1
        assert (
            value(registry, "teston_job_last_failure_timestamp_seconds", kind=NIGHTLY)
            == clock.now.timestamp()
        )
        assert value(registry, "teston_job_last_success_timestamp_seconds", kind=NIGHTLY) == 0

        clock.now = datetime(2021, 8, 28, 1, 30, tzinfo=UTC)
        scheduler = AnalyticsScheduler(
            pool.connection, Schedule(export_dir=tmp_path / "exports"), clock=clock, metrics=metrics
        )
        assert scheduler.run_nightly().status == JobStatus.SUCCEEDED
        assert scheduler.run_nightly().status == JobStatus.SKIPPED  # the same slot, already run
    assert value(registry, "teston_job_runs_total", kind=NIGHTLY, status="succeeded") == 1
    assert value(registry, "teston_job_runs_total", kind=NIGHTLY, status="skipped") == 1
    assert value(registry, "teston_job_runs_total", kind=INTRADAY, status="succeeded") == 0
    assert value(registry, "teston_job_last_success_timestamp_seconds", kind=NIGHTLY) == clock.now.timestamp()
    # Two runs timed (the skipped one is not), each taking some time.
    assert value(registry, "teston_job_duration_seconds_count", kind=NIGHTLY) == 2
    duration = value(registry, "teston_job_duration_seconds_sum", kind=NIGHTLY)
    assert duration is not None
    assert duration > 0
    # 2021-08-27 is final: one day behind on the 28th, three on the 30th although no job ran since.
    midnight = datetime(2021, 8, 27, tzinfo=UTC).timestamp()
    assert value(registry, "teston_rollup_newest_final_day_timestamp_seconds") == midnight
    assert value(registry, "teston_rollup_final_day_lag_days") == 1
    clock.now = datetime(2021, 8, 30, 3, 0, tzinfo=UTC)
    assert value(registry, "teston_rollup_final_day_lag_days") == 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_teston_scheduler_serves_its_job_metrics(db_url: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "DB_ADDR": db_url,
        "METRICS_PORT": str(port),
        "TESTON_HOME": str(tmp_path),
        "DISCORD_TOKEN": "",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "teston", "scheduler", env=env, stderr=asyncio.subprocess.PIPE
    )
    text = ""
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            # The nightly job runs at start-up (catching up on a missed night): wait until it is counted.
            while 'teston_job_runs_total{kind="nightly",status="succeeded"} 1.0' not in text:
                assert time.monotonic() < deadline, f"no nightly run counted in:\n{text}"
                try:
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                        text = await response.text()
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.2)
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert "teston_ingest_" not in text  # one registry per process, with only its roles' metrics
    assert "teston_job_last_success_timestamp_seconds" in text


# --- the bot ---------------------------------------------------------------------------------------


async def test_commands_are_counted_by_name_and_outcome_with_their_latency(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    registry = CollectorRegistry()
    metrics = BotMetrics(registry)
    core = CommandCore(database=pool, catalog=CATALOG, clock=lambda: NOW, metrics=metrics)
    invoker = Invoker(user_id=1)
    for text in ("!recent en 3", "!recent de", "!stats 2021-08-27 en", "!stats someday", "!help", "!nothing"):
        await core.answer_text(text, invoker)
    # A database that cannot be reached is our failure, not the user's.
    async with AsyncConnectionPool(db_url, min_size=0, max_size=1, open=False) as closed:
        pass
    broken = CommandCore(database=closed, catalog=CATALOG, clock=lambda: NOW, metrics=metrics)
    await broken.answer_text("!recent en", invoker)

    def commands(command: str, outcome: str) -> float | None:
        return value(registry, "teston_bot_commands_total", command=command, outcome=outcome)

    assert commands("recent", "ok") == 2
    assert commands("recent", "failure") == 1
    assert commands("stats", "ok") == 1
    assert commands("stats", "problem") == 1
    assert commands("help", "ok") == 1
    assert commands("unknown", "problem") == 1
    assert commands("setlang", "ok") == 0
    assert value(registry, "teston_bot_command_latency_seconds_count", command="recent") == 3
    assert value(registry, "teston_bot_command_latency_seconds_count", command="stats") == 2


async def test_the_bot_serves_commands_and_gateway_state_over_http(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "test-token")
    settings = load_settings(env_file=None)
    registry = CollectorRegistry()
    metrics = BotMetrics(registry)
    port = _free_port()
    server = MetricsServer(registry, host="127.0.0.1", port=port)
    await server.start()
    try:
        async with FakeDiscord.start() as fake:
            with pointed_at(fake):
                service = discord_bot_service(
                    settings, db_url, catalog=CATALOG, metrics=metrics, guild_ready_timeout=0.05
                )
                await service.start()
                try:
                    await fake.wait_until_identified(timeout=10)
                    await fake.state.changes.wait_for(
                        lambda: fake.registered_commands, timeout=10, what="the slash commands"
                    )
                    await fake.invoke_slash("help", user=fake.users.alice, timeout=10)
                    await fake.invoke_slash("stats", {"date": "not a day"}, user=fake.users.alice, timeout=10)
                    await until(lambda: value(registry, "teston_bot_gateway_connected") == 1, "ready")
                    # Discord asks the bot to reconnect: one drop, then connected again (resumed).
                    await fake.request_reconnect()
                    await until(
                        lambda: (
                            value(registry, "teston_bot_gateway_disconnects_total") == 1
                            and value(registry, "teston_bot_gateway_connected") == 1
                        ),
                        "a reconnect",
                    )
                    url = f"http://127.0.0.1:{port}/metrics"
                    async with aiohttp.ClientSession() as session, session.get(url) as response:
                        text = await response.text()
                finally:
                    await service.stop()
    finally:
        await server.stop()

    assert 'teston_bot_commands_total{command="help",outcome="ok"} 1.0' in text
    assert 'teston_bot_commands_total{command="stats",outcome="problem"} 1.0' in text
    assert "teston_bot_gateway_connected 1.0" in text
    assert 'teston_bot_command_latency_seconds_count{command="help"} 1.0' in text
    assert value(registry, "teston_bot_gateway_connected") == 0  # stopped
