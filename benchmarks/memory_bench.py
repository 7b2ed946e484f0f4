"""Figure 13: the memory of `teston up` following 50 events/s for 10 minutes with 50 feeds.

The whole service runs as one OS process, `teston up` (ingestion, the roll-up schedule and the Discord
bot with its feeds, each with its default settings), started through `tests.fakediscord.launch` so that
discord.py talks to a fake Discord (`tests.fakediscord.FakeDiscord`, on a thread of this process) with
five servers: the fake's first with its two channels and four more with one each. Fifty feeds, ten per
server (the most `!watch` allows), follow the fifty wikis that have most changes in the stream, with the
default filter. The stream is a local SSE server (`local_stream.PacedStream`) sending synthetic events at
50/s with event times running with the clock.

The service runs each scheduled roll-up in a child process of its own (`analytics.job_process`), which
lives for the seconds the job takes. Every second the resident set (`VmRSS` of `/proc/<pid>/status`) of
the service process and of its whole process tree (the service and any job child) is sampled.

- Peak: the larger of the highest tree sample and the sum of the service's own high-water mark
  (`VmHWM`, read before it is stopped) and the largest peak of a job's child (each child's `ru_maxrss`,
  recorded in its run's `job_runs.details.max_rss_mib`; 0 without a job). Samples a second apart
  can miss a child's peak; the sum cannot, being a bound above any moment's tree.
- Growth: the least-squares slope of the service process's samples over the second half of the
  stream, in MiB per minute (`TARGET_SLOPE_MIB_PER_MIN` at most). The long-lived process is what must
  not grow; a child's few seconds in the tree samples would tilt a slope by where they fall in the
  window, so the tree's slope is reported beside it, not judged.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from benchmarks.harness import Context, Figure
from benchmarks.live_stream import stop_process
from benchmarks.local_stream import PacedStream
from benchmarks.synthetic import EventFactory
from bot.feeds.filters import parse_filters
from teston.core.partitions import ensure_partitions
from tests.fakediscord import Channel, FakeDiscord

TARGET_PEAK_MIB = 400.0
# "Not growing": the resident set's slope over the second half at most this (60 MiB an hour).
TARGET_SLOPE_MIB_PER_MIN = 1.0
SAMPLE_SECONDS = 1.0
FEEDS_PER_SERVER = 10
EXTRA_SERVERS = 4
MIB = 2**20
_ROOT = Path(__file__).resolve().parent.parent


# -- the fake Discord on a thread of its own ----------------------------------------------------------


class FakeDiscordThread:
    """A FakeDiscord served by an event loop on its own thread, set up by `setup` before it is ready
    (`servers` holds what `setup` returned)."""

    def __init__(self, setup: Callable[[FakeDiscord], list[list[Channel]]]) -> None:
        self._setup = setup
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fake-discord", daemon=True)
        self.fake: FakeDiscord | None = None
        self.servers: list[list[Channel]] = []
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the benchmark's thread
            self.error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with FakeDiscord.start() as fake:
            self.servers = self._setup(fake)
            self.fake = fake
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> tuple[FakeDiscord, list[list[Channel]]]:
        self._thread.start()
        self._ready.wait(30)
        if self.fake is None:
            raise RuntimeError(f"the fake Discord did not start: {self.error!r}")
        return self.fake, self.servers

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


# -- resident set of a process tree, from /proc -------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants alive now (from each thread's `children` list)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                queue += [
                    int(child) for child in Path(f"/proc/{current}/task/{task}/children").read_text().split()
                ]
            except (OSError, ValueError):
                continue
    return found


def rss_bytes(pid: int) -> int:
    """The resident set of process `pid` in bytes (0 once it is gone)."""
    return _status_kib(pid, "VmRSS") * 1024


def tree_rss_bytes(pid: int) -> tuple[int, int]:
    """The resident set of the tree rooted at `pid` in bytes, and how many processes it has."""
    pids = process_tree(pid)
    return sum(_status_kib(p, "VmRSS") for p in pids) * 1024, len(pids)


def slope_per_minute(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per minute; 0 with fewer than two."""
    if len(samples) < 2:
        return 0.0
    times = [t for t, _ in samples]
    values = [v for _, v in samples]
    if max(times) == min(times):
        return 0.0
    return float(statistics.linear_regression(times, values).slope * 60)


# -- the run ------------------------------------------------------------------------------------------


def _feed_wikis(lines: Sequence[str], count: int) -> list[str]:
    wikis = collections.Counter(json.loads(line).get("wiki") for line in lines)
    return [wiki for wiki, _ in wikis.most_common() if wiki][:count]


def _add_servers(fake: FakeDiscord) -> list[list[Channel]]:
    """The fake's own server and `EXTRA_SERVERS` more: each server's text channels."""
    servers = [[fake.channels.general, fake.channels.moderation]]
    for n in range(EXTRA_SERVERS):
        servers.append([fake.add_guild((900_000_000_000 + n) << 22, f"bench server {n + 1}")])
    return servers


def _create_feeds(url: str, servers: Sequence[Sequence[Channel]], wikis: Sequence[str]) -> int:
    """Ten feeds per server, spread over its channels, with the default filter."""
    words = parse_filters([]).words()
    rows = []
    for index, wiki in enumerate(wikis):
        channels = servers[(index // FEEDS_PER_SERVER) % len(servers)]
        channel = channels[index % len(channels)]
        rows.append((channel.guild_id, channel.id, wiki, words))
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO feeds (guild_id, channel_id, wiki, filters, cursor) VALUES (%s, %s, %s, %s, 0)",
                rows,
            )
        conn.commit()
    return len(rows)


@contextmanager
def _service(
    context: Context, url: str, fake: FakeDiscord, stream_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`teston up` pointed at the fake Discord and the local stream; stopped (SIGTERM) after the block."""
    home = context.workdir / "memory-home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "DB_ADDR": url,
        "DISCORD_TOKEN": fake.token,
        "STREAM_URL": stream_url,
        "TESTON_HOME": str(home),
        "LOG_LEVEL": "WARNING",
        "METRICS_PORT": "0",
    }
    for name in ("BUS_URL", "TESTON_ROLES", "INGEST_ENABLED"):
        env.pop(name, None)
    log_path = context.workdir / "memory-up.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakediscord.launch", fake.base_url, fake.gateway_url, "up"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=_ROOT,
        )
    try:
        yield process
    finally:
        stop_process(process, signal.SIGTERM, timeout=60)


def run(context: Context) -> list[Figure]:
    size = context.size
    seconds = size.memory_seconds
    rate = size.freshness_rate
    count = max(1, int(seconds * rate))
    now = datetime.now(UTC)
    lines = list(
        EventFactory(context.profile, seed=context.seed + 13).events(
            count, now, now + timedelta(seconds=seconds)
        )
    )
    wikis = _feed_wikis(lines, size.memory_feeds)
    samples: list[tuple[float, float]] = []  # (seconds since the stream started, tree RSS in MiB)
    service_samples: list[tuple[float, float]] = []  # the same, of the service process alone
    processes = 0
    high_water = 0
    with context.postgres() as server, FakeDiscordThread(_add_servers) as (fake, servers):
        with psycopg.connect(server.url) as conn:
            ensure_partitions(conn, [now.date(), (now + timedelta(days=1)).date()])
            conn.commit()
        feeds = _create_feeds(server.url, servers, wikis)
        channels = sum(len(channels) for channels in servers)
        with PacedStream(lines, rate) as stream, _service(context, server.url, fake, stream.url) as up:
            started: float | None = None
            connect_by = time.monotonic() + 120
            while up.poll() is None:
                if started is None and time.monotonic() > connect_by:
                    raise RuntimeError("`teston up` did not connect to the stream in 120 s")
                if started is None and stream.sent:
                    started = time.monotonic()
                    context.log(f"memory: `teston up` follows the stream ({count} events at {rate:.0f}/s)")
                rss, tree = tree_rss_bytes(up.pid)
                own = rss_bytes(up.pid)
                if started is not None:
                    moment = time.monotonic() - started
                    samples.append((moment, rss / MIB))
                    service_samples.append((moment, own / MIB))
                    processes = max(processes, tree)
                high_water = max(high_water, _status_kib(up.pid, "VmHWM") * 1024)
                if stream.done.is_set():
                    break
                time.sleep(SAMPLE_SECONDS)
            exited = up.poll()
        stored = _count(server.url, now)
        job_peaks = _job_peaks(server.url)
        posts = len(fake.bot_messages())
        errors = fake.internal_errors
    if exited is not None or not samples:
        log = (context.workdir / "memory-up.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"`teston up` ended early (exit {exited}):\n{log}")
    sampled_peak = max(v for _, v in samples)
    child_peak = max((mib for _, mib in job_peaks), default=0.0)
    # The service's high-water mark plus the largest child's peak bounds the tree at any moment.
    peak = max(sampled_peak, high_water / MIB + child_peak)
    half = samples[-1][0] / 2
    slope = slope_per_minute([(t, v) for t, v in service_samples if t >= half])
    tree_slope = slope_per_minute([(t, v) for t, v in samples if t >= half])
    last = service_samples[-1][1]
    step = 60.0 if seconds >= 120 else 5.0
    met = peak <= TARGET_PEAK_MIB and slope <= TARGET_SLOPE_MIB_PER_MIN
    return [
        Figure(
            number=13,
            what=(
                f"memory: peak RSS of `teston up` (ingest, roll-ups, bot) following {rate:.0f} events/s for "
                f"{_duration(seconds)} with {feeds} feeds"
            ),
            result=(
                f"peak {peak:.0f} MiB (service at the end {last:.0f} MiB); "
                f"service, second half {slope:+.2f} MiB/min"
            ),
            target=(
                f"≤ {TARGET_PEAK_MIB:.0f} MiB, and not growing "
                f"(service's slope over the second half ≤ {TARGET_SLOPE_MIB_PER_MIN:.0f} MiB/min)"
            ),
            met=met,
            values={
                "peak_mib": peak,
                "sampled_peak_mib": sampled_peak,
                "service_high_water_mib": high_water / MIB,
                "job_child_peak_mib": child_peak,
                "job_runs": float(len(job_peaks)),
                "end_mib": last,
                "first_sample_mib": service_samples[0][1],
                "slope_mib_per_min": slope,
                "tree_slope_mib_per_min": tree_slope,
                "samples": float(len(samples)),
                "rows_stored": float(stored),
                "feed_posts": float(posts),
                "feeds": float(feeds),
            },
            notes=(
                f"{len(samples)} samples ({processes} process(es) at most in the tree); the service's RSS "
                f"every {step:.0f} s: {_marks(service_samples, step)} MiB; highest tree sample "
                f"{sampled_peak:.0f} MiB, service high-water {high_water / MIB:.0f} MiB, "
                f"{len(job_peaks)} job runs in children peaking at "
                f"{', '.join(f'{mib:.0f}' for _, mib in job_peaks) or '-'} MiB; "
                f"tree slope over the second half {tree_slope:+.2f} MiB/min; "
                f"{stored:,} of {count:,} events stored, {posts:,} messages posted by the bot on "
                f"{channels} channels of {len(servers)} servers"
                + (f"; fake Discord errors: {errors}" if errors else "")
                + "."
            ),
        )
    ]


def _count(url: str, since: datetime) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM recent_changes WHERE event_time >= %s", (since - timedelta(minutes=5),)
        ).fetchone()
    return int(row[0]) if row else 0


def _job_peaks(url: str) -> list[tuple[str, float]]:
    """Each job run's kind and its child's peak resident set (MiB), in the order they ran."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT kind, (details->>'max_rss_mib')::float FROM job_runs"
            " WHERE details ? 'max_rss_mib' ORDER BY id"
        ).fetchall()
    return [(str(kind), float(mib)) for kind, mib in rows]


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def _marks(samples: Sequence[tuple[float, float]], step: float) -> str:
    """The first sample at or after each multiple of `step` seconds, and the last."""
    marks, due = [], 0.0
    for moment, value in samples:
        if moment >= due:
            marks.append(f"{value:.0f}")
            due += step
    marks.append(f"{samples[-1][1]:.0f}")
    return " ".join(marks)
