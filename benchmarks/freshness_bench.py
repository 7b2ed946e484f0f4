"""Figure 7: freshness at 50 events/s, from an event's arrival to the moment `!recent` can show it.

A local SSE server (`local_stream.PacedStream`, a thread of this process) sends synthetic events at a
steady 50 per second and notes when each one left. The ingester is the production command, `python -m
teston ingest --source <that URL>`, in its own process with its default settings (an event reaching an
idle writer is committed at once; events are batched only under a backlog). A reader polls PostgreSQL
every 50 ms for rows received in the last seconds and notes when each event first becomes visible;
`!recent` reads `recent_changes` (`bot.queries.latest_changes`), so a committed row is what it can show.
(The bot keeps a `!recent` answer only until the commit's own notice reaches it, `bot.command_reads`.)
Freshness of an event = first seen − sent; polling adds up to 50 ms. Both clocks are
this machine's `time.time()`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg

from benchmarks.harness import Context, Figure, percentile
from benchmarks.live_stream import start_ingester, stop_ingester
from benchmarks.local_stream import PacedStream
from benchmarks.synthetic import EventFactory
from teston.core.partitions import ensure_partitions

POLL_SECONDS = 0.05
TARGET_P99_S = 0.3
# After the last event is sent, how long to wait for it to become visible before giving up.
SETTLE_SECONDS = 20.0
_POLL = """
SELECT event_id::text FROM recent_changes
WHERE event_time >= %(since)s AND received_at >= %(watermark)s
"""


def run(context: Context) -> list[Figure]:
    size = context.size
    count = max(1, int(size.freshness_seconds * size.freshness_rate))
    now = datetime.now(UTC)
    # Event times run with the clock, as on the live stream: event i says it happened when it is sent.
    lines = list(
        EventFactory(context.profile, seed=context.seed + 7).events(
            count, now, now + timedelta(seconds=size.freshness_seconds)
        )
    )
    with context.postgres() as server:
        with psycopg.connect(server.url) as conn:
            # The day's partition exists before the clock starts, as for every event but a day's first.
            ensure_partitions(conn, [now.date(), (now + timedelta(days=1)).date()])
            conn.commit()
        with PacedStream(lines, size.freshness_rate) as stream:
            seen, ingester_log = _follow(context, server.url, stream, now - timedelta(minutes=5))
    delays = [seen[event_id] - sent for event_id, sent in stream.sent.items() if event_id in seen]
    missing = len(stream.sent) - len(delays)
    if not delays:
        raise RuntimeError(f"no event became visible; ingester said:\n{ingester_log[-2000:]}")
    p50, p99 = percentile(delays, 50), percentile(delays, 99)
    return [
        Figure(
            number=7,
            what=f"freshness at {size.freshness_rate:.0f} events/s: arrival → visible to `!recent`",
            result=f"p99 {p99:.2f} s (p50 {p50:.2f}, max {max(delays):.2f}) over {len(delays):,} events",
            target=f"p99 ≤ {TARGET_P99_S:g} s",
            met=p99 <= TARGET_P99_S and missing == 0,
            values={"p50_s": p50, "p99_s": p99, "max_s": max(delays), "missing": float(missing)},
            notes=(
                f"{size.freshness_seconds:.0f} s of stream, `teston ingest` with default settings, "
                f"reader polling every {POLL_SECONDS * 1000:.0f} ms; {missing} events never became visible."
            ),
        )
    ]


def _follow(context: Context, url: str, stream: PacedStream, since: datetime) -> tuple[dict[str, float], str]:
    """Run the ingester on the paced stream and note when each sent event becomes visible."""
    log_path = context.workdir / "freshness-ingest.log"
    seen: dict[str, float] = {}
    with log_path.open("w") as log:
        ingester = start_ingester(context, url, stream.url, "freshness", log)
        try:
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
                        # One ingester commits one batch at a time, so arrival order is commit order; the
                        # margin covers the gap between a batch's `now()` and its commit.
                        watermark = datetime.now(UTC) - timedelta(seconds=5)
                    if ingester.poll() is not None:
                        break
                    if stream.done.is_set():
                        deadline = deadline or time.monotonic() + SETTLE_SECONDS
                        if len(seen) >= len(stream.sent) or time.monotonic() > deadline:
                            break
                    time.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - polled_at)))
        finally:
            stop_ingester(ingester)
    return seen, log_path.read_text(errors="replace")
