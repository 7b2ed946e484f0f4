"""Figure 8: the bus path against the direct path, in throughput and in freshness.

Throughput, per round, on one PostgreSQL server and one 3-node JetStream cluster (`nats-server
--jetstream` × 3 on 127.0.0.1, the stream kept on 3 replicas: `min(3, servers)`), interleaved:

A. direct: the replay of `teston ingest --source events.jsonl` (its components, as `teston.cli.wiring`
   builds them, run in this process) stores the events in PostgreSQL.
B. bus: two `teston sink` processes are started and connected first; then the same replay, with the
   settings' `BUS_URL` set, publishes the events to JetStream, and the sinks store them.

Both are timed from the replay's start until the last event is visible in PostgreSQL (for B a reader
counts the day's rows every 100 ms once the replay has published everything). The ingester runs in this
process, as in figure 1, so that neither path's time holds the start of a Python process. Before each
bus round the stream is deleted (its duplicate window would otherwise drop every event of the round as
already seen); before every round the day's partition, the cursors and the quarantine are emptied.

Freshness through the bus: a local SSE server (`local_stream.PacedStream`) sends events at 50/s; `teston
ingest --source <URL>` with `BUS_URL` publishes them with its default settings; the two sinks store them; a
reader polls `recent_changes` every 50 ms, as in figure 7. Freshness = first seen − sent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import psycopg
from prometheus_client import CollectorRegistry
from psycopg import sql

from benchmarks.harness import Context, Figure, percentile, ratio, write_lines
from benchmarks.local_stream import PacedStream
from benchmarks.synthetic import EventFactory
from teston.core.partitions import day_bounds, ensure_partitions, partition_name
from teston.core.runtime import run_components
from teston.core.settings import Settings, load_settings
from teston.core.wikis import WikiCatalog
from tests.nats_cluster import NatsCluster, running_cluster

DAY = date(2025, 5, 3)
SINKS = 2
WARM_UP = 1000
TARGET_SHARE = 0.5
TARGET_P99_S = 1.0
POLL_SECONDS = 0.05
COUNT_POLL_SECONDS = 0.1
# How long a round may take before it is declared stuck.
ROUND_TIMEOUT = 900.0
SETTLE_SECONDS = 20.0
_ROOT = Path(__file__).resolve().parent.parent
_POLL = """
SELECT event_id::text FROM recent_changes
WHERE event_time >= %(since)s AND received_at >= %(watermark)s
"""


@dataclass
class Processes:
    """The teston processes of one run, their logs in `workdir`; every one stopped by `stop_all`."""

    workdir: Path
    env: Mapping[str, str]

    def __post_init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "teston", *args],
                env=dict(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=_ROOT,
            )
        self.running.append(process)
        return process

    def stop(self, processes: Sequence[subprocess.Popen[bytes]], sig: int = signal.SIGTERM) -> None:
        """Stop `processes`, asking first, all at once."""
        for process in processes:
            if process.poll() is None:
                process.send_signal(sig)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process in self.running:
                self.running.remove(process)

    def stop_all(self) -> None:
        for process in list(self.running):
            if process.poll() is None:
                process.kill()
            process.wait()
        self.running.clear()

    def log_tail(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 once it is gone), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command: state is field 3, utime 14 and stime 15 (1-based, so indexes 11 and 12 here).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the bus ------------------------------------------------------------------------------------------


async def _stream_state(servers: Sequence[str]) -> tuple[int, int]:
    """(replicas of the stream, pull requests the consumer has waiting); (0, 0) while either is missing."""
    import nats
    import nats.errors

    from ingestion.bus.naming import CONSUMER_NAME, STREAM_NAME

    client = await nats.connect(servers=list(servers))
    try:
        js = client.jetstream(timeout=2)
        try:
            stream = await js.stream_info(STREAM_NAME)
            consumer = await js.consumer_info(STREAM_NAME, CONSUMER_NAME)
        except nats.errors.Error:
            return 0, 0
        return int(stream.config.num_replicas or 0), int(consumer.num_waiting or 0)
    finally:
        await client.close()


async def _delete_stream(servers: Sequence[str]) -> None:
    import nats
    import nats.errors
    import nats.js.errors

    from ingestion.bus.naming import STREAM_NAME

    client = await nats.connect(servers=list(servers))
    try:
        # The stream's own leader may be moving (a busy machine); a request lost then is asked again.
        for attempt in range(1, 4):
            try:
                await client.jetstream(timeout=10).delete_stream(STREAM_NAME)
            except nats.js.errors.NotFoundError:
                return
            except nats.errors.TimeoutError:
                if attempt == 3:
                    raise
            else:
                return
    finally:
        await client.close()


def _wait_for_sinks(cluster: NatsCluster, sinks: Sequence[subprocess.Popen[bytes]]) -> int:
    """Wait until the stream exists and both sinks are pulling; return the stream's replicas."""
    servers = [node.url for node in cluster.nodes]
    deadline = time.monotonic() + 60
    replicas = 0
    while time.monotonic() < deadline:
        if any(sink.poll() is not None for sink in sinks):
            raise RuntimeError("a sink ended before the run started")
        with contextlib.suppress(Exception):
            replicas, waiting = asyncio.run(_stream_state(servers))
            if replicas and waiting >= len(sinks):
                return replicas
        time.sleep(0.1)
    if not replicas:
        raise RuntimeError("the sinks never created the stream and its consumer")
    return replicas


# -- PostgreSQL ---------------------------------------------------------------------------------------


def _reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(partition_name(DAY))))
        conn.execute("TRUNCATE stream_cursors, day_arrivals, rejected_events")
        conn.execute("CHECKPOINT")


def _wait_for_rows(url: str, expected: int, processes: Sequence[subprocess.Popen[bytes]]) -> float:
    """Count the day's rows until `expected` are visible; the time (perf_counter) they were."""
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(partition_name(DAY)))
    deadline = time.monotonic() + ROUND_TIMEOUT
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(query).fetchone()
            now = time.perf_counter()
            stored = int(row[0]) if row else 0
            if stored >= expected:
                return now
            if any(process.poll() is not None for process in processes):
                raise RuntimeError(f"a teston process failed with {stored} of {expected} rows stored")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {stored} of {expected} rows after {ROUND_TIMEOUT:.0f} s")
            time.sleep(COUNT_POLL_SECONDS)


# -- the figure ---------------------------------------------------------------------------------------


def run(context: Context) -> list[Figure]:
    size = context.size
    events = size.bus_events
    start, end = day_bounds(DAY)
    replay = context.workdir / "bus-events.jsonl"
    write_lines(replay, EventFactory(context.profile, seed=context.seed + 8).events(events, start, end))
    # A small file of other events for one untimed round of each path first (imports, connections).
    warm_up = context.workdir / "bus-warm-up.jsonl"
    write_lines(warm_up, EventFactory(context.profile, seed=context.seed + 10).events(WARM_UP, start, end))
    workdir = context.workdir / "bus"
    workdir.mkdir(exist_ok=True)
    with context.postgres() as server, running_cluster(workdir) as cluster:
        with psycopg.connect(server.url) as conn:
            ensure_partitions(conn, [DAY])
            conn.commit()
        env = {
            **os.environ,
            "DB_ADDR": server.url,
            "BUS_URL": cluster.bus_url,
            "TESTON_HOME": str(workdir / "home"),
            "LOG_LEVEL": "WARNING",
            "METRICS_PORT": "0",
            "SINK_METRICS_PORT": "0",
        }
        bus_processes = Processes(workdir, env)
        try:
            throughput = _throughput(context, server.url, cluster, replay, warm_up, bus_processes)
            freshness = _freshness(context, server.url, cluster, bus_processes)
        finally:
            bus_processes.stop_all()
    return [_figure(context, throughput, freshness)]


@dataclass
class Throughput:
    direct_seconds: list[float]
    bus_seconds: list[float]
    replicas: int
    cpu: dict[str, float]


async def _replay(settings: Settings, url: str, path: Path, catalog: WikiCatalog) -> int:
    """`teston ingest --source <path>`'s components, run to the file's end; the events passed on."""
    from ingestion.metrics import IngestMetrics
    from ingestion.replay import REPLAY_BATCH_SIZE
    from teston.cli import wiring

    metrics = IngestMetrics(CollectorRegistry())
    async with aiohttp.ClientSession() as session:
        source = wiring.event_source(settings, session, source_spec=str(path), since=None, metrics=metrics)
        service = wiring.ingestion_service(
            settings,
            url,
            source,
            catalog=catalog,
            metrics=metrics,
            since=None,
            batch_size=REPLAY_BATCH_SIZE,
            metrics_port=0,
        )
        await run_components([service], asyncio.Event())
    return int(service.summary.ingested)


def _throughput(
    context: Context, url: str, cluster: NatsCluster, replay: Path, warm_up: Path, bus: Processes
) -> Throughput:
    size = context.size
    servers = [node.url for node in cluster.nodes]
    settings = load_settings(env_file=None)
    database = settings.database.model_copy(update={"url": url})
    direct_settings, bus_settings = (
        settings.model_copy(
            update={"database": database, "bus": settings.bus.model_copy(update={"url": bus_url})}
        )
        for bus_url in (None, cluster.bus_url)
    )
    catalog = WikiCatalog.load()
    direct_seconds: list[float] = []
    bus_seconds: list[float] = []
    replicas = 0
    # CPU seconds of the timed rounds, by part (PostgreSQL's own not counted).
    cpu: dict[str, float] = collections.defaultdict(float)

    def nats_cpu() -> float:
        return sum(cpu_seconds(pid) for pid in cluster.pids())

    def direct_round(path: Path, events: int) -> float:
        """The direct path; every row is committed when the replay returns."""
        _reset(url)
        started, ingester_cpu = time.perf_counter(), time.process_time()
        passed = asyncio.run(_replay(direct_settings, url, path, catalog))
        cpu["direct ingester"] += time.process_time() - ingester_cpu
        seen = _wait_for_rows(url, events, [])
        if passed != events:
            raise RuntimeError(f"the direct replay stored {passed} of {events} events")
        return seen - started

    def bus_round(path: Path, events: int) -> tuple[float, float, int]:
        """The bus path, the sinks pulling before the replay starts; (until visible, until published)."""
        _reset(url)
        asyncio.run(_delete_stream(servers))
        sinks = [bus.start(f"sink{n}", "sink", "--metrics-port", "0") for n in range(1, SINKS + 1)]
        try:
            replicas = _wait_for_sinks(cluster, sinks)
            sinks_cpu = sum(cpu_seconds(sink.pid) for sink in sinks)  # their start not counted
            started, ingester_cpu, servers_cpu = time.perf_counter(), time.process_time(), nats_cpu()
            passed = asyncio.run(_replay(bus_settings, url, path, catalog))
            published = time.perf_counter() - started
            cpu["bus ingester"] += time.process_time() - ingester_cpu
            seen = _wait_for_rows(url, events, sinks)
            cpu["3 nats-servers"] += nats_cpu() - servers_cpu
            cpu["2 sinks"] += sum(cpu_seconds(sink.pid) for sink in sinks) - sinks_cpu
        except RuntimeError as exc:
            logs = "\n".join(bus.log_tail(name) for name in ("sink1", "sink2"))
            raise RuntimeError(f"{exc}; the sinks said:\n{logs}") from None
        finally:
            bus.stop(sinks)
        if passed != events:
            raise RuntimeError(f"the bus replay published {passed} of {events} events")
        return seen - started, published, replicas

    direct_round(warm_up, WARM_UP)
    bus_round(warm_up, WARM_UP)
    cpu.clear()
    for round_no in range(size.bus_rounds):
        direct_seconds.append(direct_round(replay, size.bus_events))
        seconds, published, replicas = bus_round(replay, size.bus_events)
        bus_seconds.append(seconds)
        context.log(
            f"bus round {round_no + 1}: direct {direct_seconds[-1]:.2f}s, bus {bus_seconds[-1]:.2f}s "
            f"(all published after {published:.2f}s) for {size.bus_events} events"
        )
    return Throughput(direct_seconds, bus_seconds, replicas, dict(cpu))


@dataclass
class Freshness:
    delays: list[float]
    missing: int


def _freshness(context: Context, url: str, cluster: NatsCluster, bus: Processes) -> Freshness:
    size = context.size
    count = max(1, int(size.freshness_seconds * size.freshness_rate))
    now = datetime.now(UTC)
    lines = list(
        EventFactory(context.profile, seed=context.seed + 9).events(
            count, now, now + timedelta(seconds=size.freshness_seconds)
        )
    )
    with psycopg.connect(url) as conn:
        ensure_partitions(conn, [now.date(), (now + timedelta(days=1)).date()])
        conn.commit()
    asyncio.run(_delete_stream([node.url for node in cluster.nodes]))
    sinks = [bus.start(f"live-sink{n}", "sink", "--metrics-port", "0") for n in range(1, SINKS + 1)]
    _wait_for_sinks(cluster, sinks)
    context.log(f"bus freshness: sinks pulling; streaming {count} events at {size.freshness_rate:.0f}/s")
    since = now - timedelta(minutes=5)
    seen: dict[str, float] = {}
    with PacedStream(lines, size.freshness_rate) as stream:
        ingester = bus.start("live-ingest", "ingest", "--source", stream.url, "--metrics-port", "0")
        try:
            _follow(url, stream, since, seen, [ingester, *sinks])
            context.log(f"bus freshness: {len(seen)} of {len(stream.sent)} events seen")
        finally:
            bus.stop([ingester], signal.SIGINT)
            bus.stop(sinks)
    context.log("bus freshness: processes stopped")
    delays = [seen[event_id] - sent for event_id, sent in stream.sent.items() if event_id in seen]
    if not delays:
        raise RuntimeError(f"no event became visible; the ingester said:\n{bus.log_tail('live-ingest')}")
    return Freshness(delays, len(stream.sent) - len(delays))


def _follow(
    url: str,
    stream: PacedStream,
    since: datetime,
    seen: dict[str, float],
    processes: Sequence[subprocess.Popen[bytes]],
) -> None:
    """Note when each sent event first becomes visible, until all have or the settling time is over."""
    watermark = since
    deadline: float | None = None
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            polled_at = time.monotonic()
            rows = conn.execute(_POLL, {"since": since, "watermark": watermark}).fetchall()
            now = time.time()
            for (event_id,) in rows:
                seen.setdefault(event_id, now)
            if rows:
                # Two sinks commit concurrently, so commit order is not arrival order: a wide margin.
                watermark = datetime.now(UTC) - timedelta(seconds=30)
            if any(process.poll() is not None for process in processes):
                break
            if stream.done.is_set():
                deadline = deadline or time.monotonic() + SETTLE_SECONDS
                if len(seen) >= len(stream.sent) or time.monotonic() > deadline:
                    break
            time.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - polled_at)))


def _figure(context: Context, throughput: Throughput, freshness: Freshness) -> Figure:
    size = context.size
    events = size.bus_events
    direct_rates = [events / s for s in throughput.direct_seconds]
    bus_rates = [events / s for s in throughput.bus_seconds]
    share = ratio([b / a for a, b in zip(direct_rates, bus_rates, strict=True)])
    median_direct = sorted(direct_rates)[len(direct_rates) // 2]
    median_bus = sorted(bus_rates)[len(bus_rates) // 2]
    delays = freshness.delays
    p50, p99 = percentile(delays, 50), percentile(delays, 99)
    rounds = len(throughput.direct_seconds)
    cpu_note = ", ".join(
        f"{name} {seconds / rounds:.1f} s" for name, seconds in sorted(throughput.cpu.items())
    )
    met = share.median >= TARGET_SHARE and p99 <= TARGET_P99_S and freshness.missing == 0
    return Figure(
        number=8,
        what=(
            f"bus path: replay → `teston ingest` → JetStream R{throughput.replicas} (3 local nodes) → "
            f"{SINKS} `teston sink` → PostgreSQL, {events:,} events; and freshness through it at "
            f"{size.freshness_rate:.0f} events/s"
        ),
        result=(
            f"{median_bus:,.0f} events/s; freshness p99 {p99:.2f} s (p50 {p50:.2f}, max {max(delays):.2f}) "
            f"over {len(delays):,} events"
        ),
        baseline=f"direct path (replay → `teston ingest` → PostgreSQL): {median_direct:,.0f} events/s",
        ratio=str(share),
        target=f"≥ {TARGET_SHARE} × direct, and freshness p99 ≤ {TARGET_P99_S:.0f} s",
        met=met,
        values={
            "bus_events_per_s": median_bus,
            "direct_events_per_s": median_direct,
            "ratio": share.median,
            "ratio_low": share.low,
            "ratio_high": share.high,
            "freshness_p50_s": p50,
            "freshness_p99_s": p99,
            "freshness_max_s": max(delays),
            "missing": float(freshness.missing),
        },
        notes=(
            f"{size.bus_rounds} rounds A/B, each timed from the replay's start to the last row visible; "
            f"stream replicas {throughput.replicas}; CPU per round (PostgreSQL's not counted): {cpu_note}; "
            "freshness over "
            f"{size.freshness_seconds:.0f} s of stream with default settings, {freshness.missing} events "
            "never became visible."
        ),
    )
