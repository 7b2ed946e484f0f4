"""Figures 4 and 5: `!stats` and `!recent` latency through the bot's command core, on 30 days of data.

Data: `query_rows` raw rows (10M at the default size) over the 30 UTC days before today, with the
wiki/type/bot/namespace mix of the synthetic generator (so 300+ wikis), generated inside PostgreSQL
(`INSERT … SELECT` over `generate_series`) because going through Python would take most of an hour on two
cores. Each row copies one captured event's typed columns and its raw JSON (so `raw` has its real
size); titles, users, rcids and revision ids are varied per row as the Python generator varies them.
Besides, one rare wiki has only a few changes, the latest exactly 20 days ago.

The summary tables `!stats` reads (`daily_wiki_stats`, `daily_top_pages`, `day_rollups`) are filled by
one SQL `GROUP BY` per day over those rows: the same number of rows per day and wiki as the roll-up
writes, which is what a read's latency depends on.

Loading uses `wal_level=minimal` and creates each day's partition in the transaction that fills it, so
the 16 GB are not written twice (into the WAL too); fsync stays on. Queries are then timed on that
server: each command line goes through `CommandCore.answer_text` (parsing, wiki resolution, the
database, through a psycopg pool as the bot uses it) and is rendered with `discord_reply`, as the
Discord transport would, without sending anything. The three commands are interleaved call by call.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.harness import Context, Figure, human_bytes, percentile
from benchmarks.synthetic import EventFactory
from teston.core.partitions import day_bounds, ensure_partitions, partition_name
from teston.core.schema import RECENT_CHANGE_COLUMNS
from teston.core.statuses import DayStatus

STATS_TARGET_MS = 10.0
RECENT_TARGET_MS = 20.0
# Resolution of the template lottery: at 10M rows even the rarest tail wiki's weight is worth a slot.
MAX_SLOTS = 1_000_000
RARE_WIKI_ROWS = 12
RARE_WIKI_AGE_DAYS = 20
WARM_UP_CALLS = 30
LOAD_SETTINGS = {"wal_level": "minimal", "max_wal_senders": "0", "max_wal_size": "4GB"}

_TEMPLATE_COLUMNS = tuple(
    c for c in RECENT_CHANGE_COLUMNS if c not in {"event_time", "event_id", "raw", "received_at"}
)

_CREATE_TEMPLATES = """
CREATE TABLE bench_templates (
    id integer PRIMARY KEY,
    slot_from integer NOT NULL,
    slot_to integer NOT NULL,
    wiki text, server_name text, lang text, project text, type text, namespace integer, title text,
    user_name text, bot boolean, minor boolean, patrolled boolean, length_old integer, length_new integer,
    revision_old bigint, revision_new bigint, rcid bigint, log_type text, log_action text, comment text,
    raw jsonb
)
"""

# One row per generated change: a template drawn by lottery, varied like the Python generator varies it.
_FILL_DAY = """
INSERT INTO {partition} (
    event_time, event_id, wiki, server_name, lang, project, type, namespace, title, user_name, bot,
    minor, patrolled, length_old, length_new, revision_old, revision_new, rcid, log_type, log_action,
    comment, raw, received_at)
SELECT
    %(start)s::timestamptz + make_interval(secs => (p.g + p.jitter) * 86400.0 / %(rows)s),
    gen_random_uuid(), t.wiki, t.server_name, t.lang, t.project, t.type, t.namespace,
    CASE WHEN t.title IS NULL OR p.page = 0 THEN t.title
         ELSE left(t.title, greatest(length(t.title) - length(p.page::text) - 1, 1)) || ' ' || p.page END,
    CASE WHEN t.user_name IS NULL OR t.bot THEN t.user_name
         ELSE left(t.user_name, greatest(length(t.user_name) - length(p.editor::text), 1)) || p.editor END,
    t.bot, t.minor, t.patrolled, t.length_old, t.length_new,
    t.revision_old + %(offset)s + p.g, t.revision_new + %(offset)s + p.g, t.rcid + %(offset)s + p.g,
    t.log_type, t.log_action, t.comment, t.raw,
    %(start)s::timestamptz + make_interval(secs => (p.g + p.jitter) * 86400.0 / %(rows)s + 1)
FROM (
    SELECT g,
           random() AS jitter,
           floor(random() * %(slots)s)::integer AS slot,
           floor(exp(random() * ln(%(pages)s + 1)))::bigint - 1 AS page,
           floor(exp(random() * ln(%(editors)s + 1)))::bigint - 1 AS editor
    FROM generate_series(0, %(rows)s - 1) AS g
    OFFSET 0
) AS p
JOIN bench_slots s ON s.slot = p.slot
JOIN bench_templates t ON t.id = s.template
"""

_FILL_RARE = """
INSERT INTO {partition} (
    event_time, event_id, wiki, server_name, lang, project, type, namespace, title, user_name, bot,
    minor, patrolled, length_old, length_new, revision_old, revision_new, rcid, log_type, log_action,
    comment, raw, received_at)
SELECT %(moment)s, gen_random_uuid(), t.wiki, t.server_name, t.lang, t.project, 'edit', t.namespace,
       t.title, t.user_name, false, t.minor, t.patrolled, t.length_old, t.length_new, t.revision_old,
       t.revision_new, t.rcid, NULL, NULL, t.comment, t.raw, %(moment)s
FROM bench_templates t WHERE t.wiki = %(wiki)s ORDER BY t.id LIMIT 1
"""

_ANONYMOUS = r"(user_name ~ '^[0-9.]+$' OR user_name LIKE '%%:%%' OR user_name LIKE '~%%')"
_HOURLY = ", ".join(f"count(*) FILTER (WHERE hour = {hour})" for hour in range(24))
_SUMMARISE_DAY = (
    """
INSERT INTO daily_wiki_stats
SELECT %(day)s, wiki, count(*),
       count(*) FILTER (WHERE type = 'edit'), count(*) FILTER (WHERE type = 'new'),
       count(*) FILTER (WHERE type = 'log'), count(*) FILTER (WHERE type = 'categorize'),
       count(*) FILTER (WHERE type NOT IN ('edit', 'new', 'log', 'categorize')),
       count(*) FILTER (WHERE bot),
       count(*) FILTER (WHERE NOT bot AND anonymous),
       count(*) FILTER (WHERE NOT bot AND NOT anonymous),
       count(*) FILTER (WHERE namespace = 0), count(*) FILTER (WHERE namespace <> 0),
       coalesce(sum(greatest(length_new - coalesce(length_old, 0), 0)), 0),
       coalesce(sum(greatest(coalesce(length_old, 0) - length_new, 0)), 0),
       coalesce(sum(length_new - coalesce(length_old, 0)), 0),
       count(DISTINCT user_name), count(DISTINCT (namespace, title)),
       ARRAY[{hourly}], now()
FROM (
    SELECT wiki, type, bot, namespace, title, user_name, length_old, length_new,
           extract(hour FROM event_time AT TIME ZONE 'UTC')::integer AS hour, {anonymous} AS anonymous
    FROM {partition}
) AS day_rows
GROUP BY wiki
""",
    """
INSERT INTO daily_top_pages
SELECT %(day)s, wiki, rank, namespace, title, changes FROM (
    SELECT wiki, namespace, title, count(*) AS changes,
           row_number() OVER (PARTITION BY wiki ORDER BY count(*) DESC, title) AS rank
    FROM {partition} WHERE title IS NOT NULL GROUP BY wiki, namespace, title
) AS ranked WHERE rank <= 10
""",
    """
INSERT INTO day_rollups (day, status, incomplete, events, wikis, max_received_at, computed_at)
SELECT %(day)s, %(status)s, false, count(*), count(DISTINCT wiki), max(received_at), now() FROM {partition}
""",
)


@dataclass(frozen=True)
class LoadedData:
    days: list[date]
    rows: int
    wikis: int
    busiest: str  # dbname
    rare: str  # dbname
    rare_latest: datetime
    bytes: int
    seconds: float


def _days(count: int, today: date) -> list[date]:
    """The `count` whole UTC days before today, oldest first."""
    return [today - timedelta(days=offset) for offset in range(count, 0, -1)]


def _load_templates(conn: psycopg.Connection[Any], context: Context, moment: datetime, rare: str) -> None:
    """One row per template (its typed columns as the ingester maps them, its raw JSON) and the lottery."""
    from ingestion.events import INGEST_COLUMNS, parse_event
    from teston.core.wikis import WikiCatalog

    catalog = WikiCatalog.load()
    lottery = min(MAX_SLOTS, max(20_000, context.size.query_rows // 10))
    conn.execute(_CREATE_TEMPLATES)
    positions = [INGEST_COLUMNS.index(column) for column in _TEMPLATE_COLUMNS]
    raw_at = INGEST_COLUMNS.index("raw")
    slot = 0
    columns = sql.SQL(", ").join(
        map(sql.Identifier, ("id", "slot_from", "slot_to", *_TEMPLATE_COLUMNS, "raw"))
    )
    with conn.cursor().copy(sql.SQL("COPY bench_templates ({}) FROM STDIN").format(columns)) as copy:
        for number, (_, weight, text) in enumerate(
            EventFactory(context.profile, context.seed).each_template(moment)
        ):
            row = parse_event(text, catalog)
            if not isinstance(row, tuple):
                raise RuntimeError(f"a template does not parse: {row!r}")
            slots = 0 if row[INGEST_COLUMNS.index("wiki")] == rare else max(1, round(weight * lottery))
            copy.write_row((number, slot, slot + slots, *(row[i] for i in positions), row[raw_at]))
            slot += slots
    conn.execute(
        "CREATE TABLE bench_slots AS"
        " SELECT generate_series(slot_from, slot_to - 1) AS slot, id AS template FROM bench_templates"
    )
    conn.execute("ALTER TABLE bench_slots ADD PRIMARY KEY (slot)")
    conn.execute("ANALYZE bench_templates, bench_slots")
    (total,) = conn.execute("SELECT count(*) FROM bench_slots").fetchone() or (0,)
    conn.execute("CREATE TABLE bench_meta AS SELECT %s::integer AS slots", (int(total),))


def _fill_day(
    url: str, day: date, rows: int, total_rows: int, offset: int, rare: str, rare_at: datetime | None
) -> None:
    start, _ = day_bounds(day)
    with psycopg.connect(url) as conn:
        conn.execute("SET work_mem = '256MB'")
        (slots,) = conn.execute("SELECT slots FROM bench_meta").fetchone() or (MAX_SLOTS,)
        partition = sql.Identifier(partition_name(day))
        # Emptied in this transaction, so it gets a new file: with wal_level=minimal the rows skip the WAL.
        conn.execute(sql.SQL("TRUNCATE {}").format(partition))
        conn.execute(
            sql.SQL(_FILL_DAY).format(partition=partition),
            {
                "start": start,
                "rows": rows,
                "slots": slots,
                "offset": offset,
                "pages": max(1000, total_rows // 30 // 3),
                "editors": max(200, total_rows // 30 // 20),
            },
        )
        if rare_at is not None:
            conn.execute(sql.SQL(_FILL_RARE).format(partition=partition), {"moment": rare_at, "wiki": rare})
        conn.commit()
        conn.execute(sql.SQL("ANALYZE {}").format(partition))
        for statement in _SUMMARISE_DAY:
            conn.execute(
                sql.SQL(statement).format(
                    partition=partition, hourly=sql.SQL(_HOURLY), anonymous=sql.SQL(_ANONYMOUS)
                ),
                {"day": day, "status": DayStatus.FINAL},
            )
        conn.commit()


def _pick_rare_wiki(context: Context) -> str:
    """A wiki of the long tail, so that its few rows are all it has."""
    tail = context.profile.templates[context.profile.source_events :]
    return tail[-1].wiki if tail else context.profile.templates[-1].wiki


def load(url: str, context: Context, now: datetime) -> LoadedData:
    size = context.size
    started = time.monotonic()
    days = _days(size.query_days, now.date())
    rare = _pick_rare_wiki(context)
    rare_latest = (now - timedelta(days=RARE_WIKI_AGE_DAYS)).replace(microsecond=0)
    # The rare wiki's few changes: the newest 20 days ago, the others on the days before it.
    rare_moments = {
        (rare_latest - timedelta(days=k)).date(): rare_latest - timedelta(days=k)
        for k in range(RARE_WIKI_ROWS)
    }
    with psycopg.connect(url, autocommit=True) as conn:
        _load_templates(conn, context, datetime.combine(days[0], datetime.min.time(), tzinfo=UTC), rare)
        with conn.transaction():
            # All at once, before the parallel loads: partition DDL locks the parent table.
            ensure_partitions(conn, days)
    per_day = size.query_rows // len(days)
    context.log(f"query: generating {per_day * len(days):,} rows over {len(days)} days in PostgreSQL")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(
                _fill_day,
                url,
                day,
                per_day,
                size.query_rows,
                index * per_day,
                rare,
                rare_moments.get(day),
            )
            for index, day in enumerate(days)
        ]
        for done, future in enumerate(futures, 1):
            future.result()
            if done % 5 == 0:
                context.log(f"query: {done}/{len(days)} days loaded")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE daily_wiki_stats, daily_top_pages, day_rollups")
        (rows,) = conn.execute("SELECT count(*) FROM recent_changes").fetchone() or (0,)
        (wikis,) = conn.execute("SELECT count(DISTINCT wiki) FROM daily_wiki_stats").fetchone() or (0,)
        (busiest,) = conn.execute(
            "SELECT wiki FROM daily_wiki_stats GROUP BY wiki ORDER BY sum(changes) DESC LIMIT 1"
        ).fetchone() or ("",)
        (latest,) = conn.execute(
            "SELECT max(event_time) FROM recent_changes WHERE wiki = %s", (rare,)
        ).fetchone() or (None,)
        (size_bytes,) = conn.execute("SELECT pg_database_size(current_database())").fetchone() or (0,)
    if latest is None:
        raise RuntimeError(f"the rare wiki {rare} has no rows")
    return LoadedData(
        days=days,
        rows=int(rows),
        wikis=int(wikis),
        busiest=str(busiest),
        rare=rare,
        rare_latest=latest,
        bytes=int(size_bytes),
        seconds=time.monotonic() - started,
    )


async def _time_commands(
    url: str, commands: Sequence[tuple[str, str]], warm_up: Sequence[str]
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run each (kind, command line) through the command core and the Discord rendering; ms per kind."""
    from psycopg_pool import AsyncConnectionPool

    from bot.commands import CommandCore, Invoker
    from bot.rendering import discord_reply
    from teston.core.wikis import WikiCatalog

    invoker = Invoker(user_id=1, guild_id=2)
    timings: dict[str, list[float]] = {}
    last_answers: dict[str, Any] = {}
    async with AsyncConnectionPool(url, min_size=2, max_size=2, open=False, name="bench-bot") as pool:
        core = CommandCore(database=pool, catalog=WikiCatalog.load())
        for line in warm_up:
            discord_reply(await core.answer_text(line, invoker), prefix=core.prefix)
        for kind, line in commands:
            started = time.perf_counter()
            answer = await core.answer_text(line, invoker)
            discord_reply(answer, prefix=core.prefix)
            timings.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
            last_answers[kind] = answer
    return timings, last_answers


def run(context: Context) -> list[Figure]:
    now = datetime.now(UTC)
    with context.postgres(LOAD_SETTINGS) as server:
        data = load(server.url, context, now)
        context.log(
            f"query: {data.rows:,} rows, {data.wikis} wikis, {human_bytes(data.bytes)}"
            f" loaded in {data.seconds:.0f}s; busiest {data.busiest}, rare {data.rare}"
            f" (latest {data.rare_latest:%Y-%m-%d %H:%M})"
        )
        return _measure(context, server.url, data)


def _label(dbname: str) -> str:
    from teston.core.wikis import WikiCatalog

    wiki = WikiCatalog.load().by_dbname(dbname)
    if wiki is None:
        raise RuntimeError(f"{dbname} is not in the catalog")
    return wiki.label


def _measure(context: Context, url: str, data: LoadedData) -> list[Figure]:
    from teston.core.wikis import WikiCatalog

    catalog = WikiCatalog.load()
    with psycopg.connect(url) as conn:
        stats_keys = conn.execute("SELECT day, wiki FROM daily_wiki_stats").fetchall()
    rng = random.Random(context.seed)
    calls = context.size.query_calls
    busiest = _label(data.busiest)
    rare = _label(data.rare)
    commands: list[tuple[str, str]] = []
    for _ in range(calls):
        day, wiki = rng.choice(stats_keys)
        known = catalog.by_dbname(wiki)
        if known is None:
            continue
        commands.append(("stats", f"!stats {day.isoformat()} {known.label}"))
        commands.append(("recent_busiest", f"!recent {busiest}"))
        commands.append(("recent_rare", f"!recent {rare}"))
    warm_up = [line for _, line in commands[: WARM_UP_CALLS * 3]]
    timings, answers = asyncio.run(_time_commands(url, commands, warm_up))

    from bot.answers import DayStats, RecentChanges

    if not isinstance(answers.get("stats"), DayStats):
        raise RuntimeError(f"!stats did not answer with figures: {answers.get('stats')!r}")
    rare_answer = answers.get("recent_rare")
    if not isinstance(rare_answer, RecentChanges) or not rare_answer.changes:
        raise RuntimeError(f"!recent {rare} found nothing: {rare_answer!r}")
    rare_age = (datetime.now(UTC) - rare_answer.changes[0].event_time).total_seconds() / 86400

    def summary(kind: str) -> dict[str, float]:
        samples = timings.get(kind, [])
        return {
            "p50_ms": percentile(samples, 50),
            "p99_ms": percentile(samples, 99),
            "max_ms": max(samples) if samples else float("nan"),
            "calls": float(len(samples)),
        }

    stats = summary("stats")
    recent_busy = summary("recent_busiest")
    recent_rare = summary("recent_rare")
    data_note = (
        f"{data.rows:,} raw rows over {len(data.days)} days, {data.wikis} wikis "
        f"({human_bytes(data.bytes)} database), generated in {data.seconds:.0f} s."
    )
    return [
        Figure(
            number=4,
            what="`!stats <day> <wiki>` through the command core, random day and wiki",
            result=f"p99 {stats['p99_ms']:.2f} ms (p50 {stats['p50_ms']:.2f}, max {stats['max_ms']:.1f})",
            target=f"p99 ≤ {STATS_TARGET_MS:.0f} ms",
            met=stats["p99_ms"] <= STATS_TARGET_MS,
            values={**stats, "rows": float(data.rows), "wikis": float(data.wikis)},
            notes=f"{int(stats['calls'])} calls, interleaved with #5's; {data_note}",
        ),
        Figure(
            number=5,
            what=f"`!recent` for the busiest wiki ({busiest}) and a rare one ({rare}, latest change "
            f"{rare_age:.0f} days old)",
            result=f"busiest p99 {recent_busy['p99_ms']:.2f} ms (p50 {recent_busy['p50_ms']:.2f}); "
            f"rare p99 {recent_rare['p99_ms']:.2f} ms (p50 {recent_rare['p50_ms']:.2f})",
            target=f"p99 ≤ {RECENT_TARGET_MS:.0f} ms",
            met=max(recent_busy["p99_ms"], recent_rare["p99_ms"]) <= RECENT_TARGET_MS,
            values={
                **{f"busiest_{k}": v for k, v in recent_busy.items()},
                **{f"rare_{k}": v for k, v in recent_rare.items()},
                "rare_age_days": rare_age,
            },
            notes=f"{int(recent_busy['calls'])} calls each, default filters (no bots, no categorize).",
        ),
    ]
